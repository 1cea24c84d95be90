/*
 * The compiled impairment core: the netem-semantics decision model of
 * lab/impairment/model.py and the TUN-to-TUN forwarding loop, in C.
 *
 * The Python model (model.py) is the reference; this file replicates it bit for bit
 * (tests/test_core_differential.py feeds both the same packets and compares):
 *
 *   - random streams: numpy's SeedSequence (spawn key (direction, kind[, flow])) seeding
 *     PCG64 (XSL-RR 128/64), numpy's double conversion (x >> 11) * 2**-53 and its
 *     buffered 32-bit draws (low half first) for Generator.integers(0, 2**32);
 *   - netem's correlation, computed exactly as model.correlate does it per block of
 *     BLOCK_SIZE draws and per chunk (rho**-k from libm's pow, a running sum);
 *   - the order of decisions, the queue (a heap or a FIFO, as the model picks), rate,
 *     keep_order and duplicates exactly as DirectionModel.decide.
 *
 * The forwarding loop (Engine.run) holds no Python object per packet: packets are
 * read into a C buffer, judged, held on a binary heap of departures, written, and
 * recorded into growable C arrays that Python turns into the .npz ground truth once,
 * at the end. It runs with the GIL released and returns to Python only when a signal
 * arrives (the wake fd) or it has stopped.
 *
 * Build: a setuptools extension (setup.py), compiled with -ffp-contract=off so that
 * no multiply-add is fused and the floating-point steps round as numpy's do.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define BLOCK_SIZE 65536
#define TABLE_SIZE 4096
#define HEADER_BYTES 64
#define READ_BATCH 64
#define MAX_PACKET 65536

#define FORWARDED 0
#define DROPPED_LOSS 1
#define DROPPED_QUEUE 2

#define FLAG_DUPLICATED 1
#define FLAG_CORRUPTED 2
#define FLAG_REORDERED 4
#define FLAG_PENDING_AT_STOP 8

#define KIND_LOSS 0
#define KIND_DUPLICATE 1
#define KIND_CORRUPT 2
#define KIND_CORRUPT_BIT 3
#define KIND_DELAY 4
#define KIND_REORDER 5

#define LOSS_NONE 0
#define LOSS_RANDOM 1
#define LOSS_GEMODEL 2

/* ---------------------------------------------------------------- PCG64 ------ */

typedef __uint128_t u128;

#define PCG_MULT ((((u128)0x2360ED051FC65DA4ULL) << 64) | 0x4385DF649FCCF645ULL)

typedef struct {
    u128 state;
    u128 inc;
    int has32;
    uint32_t u32;
} pcg64_t;

static inline uint64_t pcg_next(pcg64_t *g) {
    g->state = g->state * PCG_MULT + g->inc;
    uint64_t x = ((uint64_t)(g->state >> 64)) ^ (uint64_t)g->state;
    unsigned rot = (unsigned)(g->state >> 122);
    return (x >> rot) | (x << ((-rot) & 63));
}

static inline double pcg_double(pcg64_t *g) {
    return (double)(pcg_next(g) >> 11) * (1.0 / 9007199254740992.0);
}

static inline uint32_t pcg_u32(pcg64_t *g) {
    if (g->has32) {
        g->has32 = 0;
        return g->u32;
    }
    uint64_t n = pcg_next(g);
    g->has32 = 1;
    g->u32 = (uint32_t)(n >> 32);
    return (uint32_t)(n & 0xFFFFFFFFu);
}

/* numpy's SeedSequence (pool of 4 uint32) -> generate_state(4, uint64) -> PCG64. */
#define SS_POOL 4
#define SS_INIT_A 0x43b0d7e5u
#define SS_MULT_A 0x931e8875u
#define SS_INIT_B 0x8b51f9ddu
#define SS_MULT_B 0x58f38dedu
#define SS_MIX_L 0xca01f9ddu
#define SS_MIX_R 0x4973f715u

static inline uint32_t ss_hashmix(uint32_t value, uint32_t *hash_const) {
    value ^= *hash_const;
    *hash_const *= SS_MULT_A;
    value *= *hash_const;
    value ^= value >> 16;
    return value;
}

static inline uint32_t ss_mix(uint32_t x, uint32_t y) {
    uint32_t r = SS_MIX_L * x - SS_MIX_R * y;
    r ^= r >> 16;
    return r;
}

/* entropy: the seed's uint32 words (little-endian, [0] for 0); spawn: the key words. */
static void seed_pcg(pcg64_t *g, const uint32_t *entropy, int n_entropy, const uint32_t *spawn,
                     int n_spawn) {
    uint32_t words[32];
    int n = 0;
    for (int i = 0; i < n_entropy && n < 24; i++) words[n++] = entropy[i];
    if (n_spawn > 0)
        while (n < SS_POOL) words[n++] = 0;
    for (int i = 0; i < n_spawn && n < 32; i++) words[n++] = spawn[i];

    uint32_t pool[SS_POOL];
    uint32_t hc = SS_INIT_A;
    for (int i = 0; i < SS_POOL; i++) pool[i] = ss_hashmix(i < n ? words[i] : 0, &hc);
    for (int src = 0; src < SS_POOL; src++)
        for (int dst = 0; dst < SS_POOL; dst++)
            if (src != dst) pool[dst] = ss_mix(pool[dst], ss_hashmix(pool[src], &hc));
    for (int src = SS_POOL; src < n; src++)
        for (int dst = 0; dst < SS_POOL; dst++)
            pool[dst] = ss_mix(pool[dst], ss_hashmix(words[src], &hc));

    uint32_t out[8];
    uint32_t hb = SS_INIT_B;
    for (int i = 0; i < 8; i++) {
        uint32_t v = pool[i % SS_POOL];
        v ^= hb;
        hb *= SS_MULT_B;
        v *= hb;
        v ^= v >> 16;
        out[i] = v;
    }
    uint64_t s[4];
    for (int i = 0; i < 4; i++) s[i] = (uint64_t)out[2 * i] | ((uint64_t)out[2 * i + 1] << 32);
    u128 initstate = ((u128)s[0] << 64) | s[1];
    u128 initseq = ((u128)s[2] << 64) | s[3];
    g->state = 0;
    g->inc = (initseq << 1) | 1;
    g->state = g->state * PCG_MULT + g->inc;
    g->state += initstate;
    g->state = g->state * PCG_MULT + g->inc;
    g->has32 = 0;
    g->u32 = 0;
}

/* ------------------------------------------------- uniforms (model._Uniforms) ---- */

typedef struct {
    pcg64_t g;
    double rho;
    double last;       /* y of the previous draw (the seed draw at first) */
    double chunk_last; /* y before the current chunk */
    double sum;        /* running sum of rho**-k * u over the chunk */
    int64_t chunk;     /* chunk length, as model.correlate computes it */
    int64_t k;         /* draws so far in this chunk */
    int64_t pos;       /* draws so far in this block */
} ustream_t;

static void ustream_init(ustream_t *s, const uint32_t *entropy, int n_entropy,
                         const uint32_t *spawn, int n_spawn, double rho, int64_t chunk) {
    memset(s, 0, sizeof(*s));
    seed_pcg(&s->g, entropy, n_entropy, spawn, n_spawn);
    s->rho = rho;
    s->chunk = chunk < 1 ? 1 : chunk;
    s->pos = BLOCK_SIZE;
    if (rho > 0) s->last = pcg_double(&s->g); /* netem seeds `last` with one draw */
}

static inline double ustream_next(ustream_t *s) {
    double u = pcg_double(&s->g);
    if (s->rho <= 0.0) return u;
    if (s->rho >= 1.0) return s->last;
    if (s->pos == BLOCK_SIZE) { /* a new block restarts the chunking */
        s->pos = 0;
        s->k = s->chunk;
    }
    if (s->k == s->chunk) {
        s->chunk_last = s->last;
        s->sum = 0.0;
        s->k = 0;
    }
    s->k++;
    s->pos++;
    double grow = pow(s->rho, -(double)s->k);
    s->sum += grow * u;
    double y = (s->chunk_last + (1.0 - s->rho) * s->sum) / grow;
    s->last = y;
    return y;
}

/* ------------------------------------------------------------ the model ------ */

typedef struct {
    int64_t key; /* -1: empty slot */
    ustream_t loss, dup, corrupt, reorder, delay;
    pcg64_t bits;
    int ge_bad;
    int64_t counter;
} flow_t;

typedef struct {
    int64_t fate;
    int64_t send_at;
    int64_t dup_at;
    int64_t bit;
    int reordered;
} verdict_t;

typedef struct {
    PyObject_HEAD
    /* parameters */
    int clean;
    int direction_index;
    uint32_t seed_words[24];
    int n_seed_words;
    int loss_mode;
    double p_loss, ge_p, ge_r, ge_loss_bad, ge_loss_good;
    double rho_loss, rho_dup, rho_corrupt, rho_reorder, rho_delay;
    int64_t chunk_loss, chunk_dup, chunk_corrupt, chunk_reorder, chunk_delay;
    int has_dup, has_corrupt, marks;
    double p_dup, p_corrupt, p_reorder;
    int64_t gap;
    int64_t delay_ns, jitter_ns;
    int jittered, uniform;
    int64_t table_ns[TABLE_SIZE];
    int64_t rate_bps;
    int keep_order, loss_only, tail, heap_mode;
    int64_t limit;
    /* state */
    int64_t last_send, link_free;
    int64_t *pending; /* heap (heap_mode) or ring of capacity limit + 1 */
    int64_t p_head, p_count, p_cap;
    flow_t **flows; /* open addressing on key */
    int64_t f_cap, f_count;
} ModelObject;

static flow_t *new_flow(ModelObject *m, int64_t key) {
    flow_t *f = calloc(1, sizeof(flow_t));
    if (!f) return NULL;
    f->key = key;
    uint32_t spawn[3];
    int n_spawn = key == 0 ? 2 : 3;
    spawn[0] = (uint32_t)m->direction_index;
    spawn[2] = (uint32_t)key;
#define SEED(stream, kind, rho, chunk)                                                  \
    do {                                                                                \
        spawn[1] = kind;                                                                \
        ustream_init(&f->stream, m->seed_words, m->n_seed_words, spawn, n_spawn, rho, \
                     chunk);                                                            \
    } while (0)
    if (m->loss_mode == LOSS_GEMODEL)
        SEED(loss, KIND_LOSS, 0.0, 1);
    else if (m->loss_mode == LOSS_RANDOM)
        SEED(loss, KIND_LOSS, m->rho_loss, m->chunk_loss);
    if (m->has_dup) SEED(dup, KIND_DUPLICATE, m->rho_dup, m->chunk_dup);
    if (m->has_corrupt) {
        SEED(corrupt, KIND_CORRUPT, m->rho_corrupt, m->chunk_corrupt);
        spawn[1] = KIND_CORRUPT_BIT;
        seed_pcg(&f->bits, m->seed_words, m->n_seed_words, spawn, n_spawn);
    }
    if (m->gap) SEED(reorder, KIND_REORDER, m->rho_reorder, m->chunk_reorder);
    if (m->jittered) SEED(delay, KIND_DELAY, m->rho_delay, m->chunk_delay);
#undef SEED
    return f;
}

static inline uint64_t hash_key(int64_t key) {
    uint64_t h = (uint64_t)key * 0x9E3779B97F4A7C15ULL;
    return h ^ (h >> 29);
}

static int flows_insert(flow_t **table, int64_t cap, flow_t *f) {
    uint64_t i = hash_key(f->key) & (uint64_t)(cap - 1);
    while (table[i]) i = (i + 1) & (uint64_t)(cap - 1);
    table[i] = f;
    return 0;
}

static flow_t *get_flow(ModelObject *m, int64_t key) {
    uint64_t mask = (uint64_t)(m->f_cap - 1);
    uint64_t i = hash_key(key) & mask;
    while (m->flows[i]) {
        if (m->flows[i]->key == key) return m->flows[i];
        i = (i + 1) & mask;
    }
    if (2 * (m->f_count + 1) > m->f_cap) {
        int64_t cap = m->f_cap * 2;
        flow_t **table = calloc((size_t)cap, sizeof(flow_t *));
        if (!table) return NULL;
        for (int64_t j = 0; j < m->f_cap; j++)
            if (m->flows[j]) flows_insert(table, cap, m->flows[j]);
        free(m->flows);
        m->flows = table;
        m->f_cap = cap;
    }
    flow_t *f = new_flow(m, key);
    if (!f) return NULL;
    flows_insert(m->flows, m->f_cap, f);
    m->f_count++;
    return f;
}

/* pending departures: a min-heap or a FIFO, as the Python model picks */
static inline int64_t pending_front(ModelObject *m) {
    return m->heap_mode ? m->pending[0] : m->pending[m->p_head];
}

static inline void pending_pop(ModelObject *m) {
    if (!m->heap_mode) {
        m->p_head = (m->p_head + 1) % m->p_cap;
        m->p_count--;
        return;
    }
    int64_t *h = m->pending;
    int64_t n = --m->p_count;
    if (n == 0) return;
    int64_t v = h[n];
    int64_t i = 0;
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && h[c + 1] < h[c]) c++;
        if (h[c] >= v) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = v;
}

static inline void pending_push(ModelObject *m, int64_t v) {
    if (!m->heap_mode) {
        m->pending[(m->p_head + m->p_count) % m->p_cap] = v;
        m->p_count++;
        return;
    }
    int64_t *h = m->pending;
    int64_t i = m->p_count++;
    while (i > 0) {
        int64_t parent = (i - 1) / 2;
        if (h[parent] <= v) break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = v;
}

static inline void pending_purge(ModelObject *m, int64_t now) {
    while (m->p_count && pending_front(m) <= now) pending_pop(m);
}

static inline int64_t draw_delay(ModelObject *m, flow_t *f) {
    double u = ustream_next(&f->delay);
    int64_t offset;
    if (m->uniform) {
        int64_t span = 2 * m->jitter_ns;
        int64_t step = (int64_t)(u * (double)span);
        if (step > span - 1) step = span - 1;
        offset = step - m->jitter_ns;
    } else {
        int64_t index = (int64_t)(u * (double)TABLE_SIZE);
        if (index > TABLE_SIZE - 1) index = TABLE_SIZE - 1;
        offset = m->table_ns[index];
    }
    int64_t d = m->delay_ns + offset;
    return d < 0 ? 0 : d;
}

/* DirectionModel.decide, step for step. Returns -1 on allocation failure. */
static int decide(ModelObject *m, int64_t now, int64_t wire_size, int64_t key, verdict_t *v) {
    v->fate = FORWARDED;
    v->send_at = now;
    v->dup_at = -1;
    v->bit = -1;
    v->reordered = 0;
    if (m->clean) return 0;
    flow_t *f = get_flow(m, key);
    if (!f) return -1;

    /* 1. loss */
    if (m->loss_mode) {
        if (m->loss_mode == LOSS_RANDOM) {
            if (ustream_next(&f->loss) < m->p_loss) {
                v->fate = DROPPED_LOSS;
                return 0;
            }
        } else if (f->ge_bad) {
            if (ustream_next(&f->loss) < m->ge_r) f->ge_bad = 0;
            if (ustream_next(&f->loss) < m->ge_loss_bad) {
                v->fate = DROPPED_LOSS;
                return 0;
            }
        } else {
            if (ustream_next(&f->loss) < m->ge_p) f->ge_bad = 1;
            if (ustream_next(&f->loss) < m->ge_loss_good) {
                v->fate = DROPPED_LOSS;
                return 0;
            }
        }
        if (m->loss_only) return 0;
    }

    /* 2. duplication, 3. corruption */
    int duplicate = 0;
    int64_t bit = -1;
    if (m->marks) {
        if (m->has_dup) duplicate = ustream_next(&f->dup) < m->p_dup;
        if (m->has_corrupt) {
            int hit = ustream_next(&f->corrupt) < m->p_corrupt;
            uint32_t index = pcg_u32(&f->bits);
            bit = hit ? (int64_t)index : -1;
        }
    }

    /* 4. queue limit */
    if (m->p_count >= m->limit) {
        pending_purge(m, now);
        if (m->p_count >= m->limit) {
            v->fate = DROPPED_QUEUE;
            return 0;
        }
    }

    /* 5. reorder */
    if (m->gap) {
        if (f->counter >= m->gap - 1 && ustream_next(&f->reorder) < m->p_reorder) {
            f->counter = 0;
            v->dup_at = duplicate ? now : -1;
            v->bit = bit;
            v->reordered = 1;
            return 0;
        }
        f->counter++;
    }

    /* 6. delay and jitter */
    int64_t send = now + (m->jittered ? draw_delay(m, f) : m->delay_ns);
    if (!m->tail) {
        if (send > now) pending_push(m, send);
        v->send_at = send;
        v->bit = bit;
        return 0;
    }

    /* 7. rate */
    int64_t duplicate_at = -1;
    if (m->rate_bps) {
        int64_t tx_ns = (int64_t)(((__int128)wire_size * 8000000000LL) / m->rate_bps);
        if (send < m->link_free) send = m->link_free;
        send += tx_ns;
        if (duplicate) {
            duplicate_at = send + tx_ns;
            m->link_free = duplicate_at;
        } else {
            m->link_free = send;
        }
    } else if (duplicate) {
        duplicate_at = send;
    }

    /* 8. keep_order */
    if (m->keep_order) {
        if (send < m->last_send) {
            send = m->last_send;
            if (duplicate_at >= 0 && duplicate_at < send) duplicate_at = send;
        }
        m->last_send = duplicate_at > send ? duplicate_at : send;
    }

    if (send > now) {
        pending_push(m, send);
        if (duplicate_at >= 0) {
            if (m->p_count >= m->limit) pending_purge(m, now);
            if (m->p_count < m->limit)
                pending_push(m, duplicate_at);
            else
                duplicate_at = -1;
        }
    }
    v->send_at = send;
    v->dup_at = duplicate_at;
    v->bit = bit;
    return 0;
}

static void Model_dealloc(ModelObject *m) {
    if (m->flows) {
        for (int64_t i = 0; i < m->f_cap; i++) free(m->flows[i]);
        free(m->flows);
    }
    free(m->pending);
    Py_TYPE(m)->tp_free((PyObject *)m);
}

/* Model(config: dict): every value computed by lab.impairment.core from the params. */
static int get_double(PyObject *d, const char *name, double *out) {
    PyObject *v = PyDict_GetItemString(d, name);
    if (!v) {
        PyErr_Format(PyExc_KeyError, "core config lacks %s", name);
        return -1;
    }
    *out = PyFloat_AsDouble(v);
    return PyErr_Occurred() ? -1 : 0;
}

static int get_int(PyObject *d, const char *name, int64_t *out) {
    PyObject *v = PyDict_GetItemString(d, name);
    if (!v) {
        PyErr_Format(PyExc_KeyError, "core config lacks %s", name);
        return -1;
    }
    *out = PyLong_AsLongLong(v);
    return PyErr_Occurred() ? -1 : 0;
}

static int Model_init(ModelObject *m, PyObject *args, PyObject *kwds) {
    PyObject *c;
    if (!PyArg_ParseTuple(args, "O!", &PyDict_Type, &c)) return -1;
    int64_t x;
#define I(name, field)                         \
    if (get_int(c, name, &x) < 0) return -1; \
    m->field = x;
#define D(name, field) \
    if (get_double(c, name, &m->field) < 0) return -1;
    I("clean", clean);
    I("direction_index", direction_index);
    I("loss_mode", loss_mode);
    D("p_loss", p_loss);
    D("ge_p", ge_p);
    D("ge_r", ge_r);
    D("ge_loss_bad", ge_loss_bad);
    D("ge_loss_good", ge_loss_good);
    D("rho_loss", rho_loss);
    D("rho_dup", rho_dup);
    D("rho_corrupt", rho_corrupt);
    D("rho_reorder", rho_reorder);
    D("rho_delay", rho_delay);
    I("chunk_loss", chunk_loss);
    I("chunk_dup", chunk_dup);
    I("chunk_corrupt", chunk_corrupt);
    I("chunk_reorder", chunk_reorder);
    I("chunk_delay", chunk_delay);
    I("has_dup", has_dup);
    I("has_corrupt", has_corrupt);
    I("marks", marks);
    D("p_dup", p_dup);
    D("p_corrupt", p_corrupt);
    D("p_reorder", p_reorder);
    I("gap", gap);
    I("delay_ns", delay_ns);
    I("jitter_ns", jitter_ns);
    I("jittered", jittered);
    I("uniform", uniform);
    I("rate_bps", rate_bps);
    I("keep_order", keep_order);
    I("loss_only", loss_only);
    I("tail", tail);
    I("heap_mode", heap_mode);
    I("limit", limit);
#undef I
#undef D
    PyObject *words = PyDict_GetItemString(c, "seed_words");
    PyObject *table = PyDict_GetItemString(c, "table_ns");
    if (!words || !PyTuple_Check(words) || PyTuple_GET_SIZE(words) < 1 ||
        PyTuple_GET_SIZE(words) > 24) {
        PyErr_SetString(PyExc_ValueError, "seed_words: a tuple of 1-24 uint32 words");
        return -1;
    }
    m->n_seed_words = (int)PyTuple_GET_SIZE(words);
    for (int i = 0; i < m->n_seed_words; i++) {
        m->seed_words[i] = (uint32_t)PyLong_AsUnsignedLong(PyTuple_GET_ITEM(words, i));
        if (PyErr_Occurred()) return -1;
    }
    if (!table || !PyTuple_Check(table) || PyTuple_GET_SIZE(table) != TABLE_SIZE) {
        PyErr_SetString(PyExc_ValueError, "table_ns: a tuple of 4096 ints");
        return -1;
    }
    for (int i = 0; i < TABLE_SIZE; i++) {
        m->table_ns[i] = PyLong_AsLongLong(PyTuple_GET_ITEM(table, i));
        if (PyErr_Occurred()) return -1;
    }
    if (m->limit < 1) {
        PyErr_SetString(PyExc_ValueError, "limit must be >= 1");
        return -1;
    }
    free(m->pending);
    m->p_cap = m->limit + 2;
    m->pending = malloc((size_t)m->p_cap * sizeof(int64_t));
    m->p_head = m->p_count = 0;
    m->last_send = m->link_free = 0;
    if (m->flows) {
        for (int64_t i = 0; i < m->f_cap; i++) free(m->flows[i]);
        free(m->flows);
    }
    m->f_cap = 16;
    m->f_count = 0;
    m->flows = calloc((size_t)m->f_cap, sizeof(flow_t *));
    if (!m->pending || !m->flows) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static PyObject *Model_decide(ModelObject *m, PyObject *args) {
    long long now, size, flow = 0;
    if (!PyArg_ParseTuple(args, "LL|L", &now, &size, &flow)) return NULL;
    verdict_t v;
    if (decide(m, now, size, flow, &v) < 0) return PyErr_NoMemory();
    return Py_BuildValue("(LLLLO)", (long long)v.fate, (long long)v.send_at,
                         (long long)v.dup_at, (long long)v.bit,
                         v.reordered ? Py_True : Py_False);
}

/* decide_many(t_in i64[], size i64[], flow i64[], fate u8[], send i64[], dup i64[],
 * bit i64[], reordered u8[]): a whole packet sequence, outputs written in place. */
static PyObject *Model_decide_many(ModelObject *m, PyObject *args) {
    Py_buffer b[8];
    if (!PyArg_ParseTuple(args, "y*y*y*w*w*w*w*w*", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5],
                          &b[6], &b[7]))
        return NULL;
    Py_ssize_t n = b[0].len / 8;
    int ok = b[1].len == n * 8 && b[2].len == n * 8 && b[3].len == n && b[4].len == n * 8 &&
             b[5].len == n * 8 && b[6].len == n * 8 && b[7].len == n;
    int failed = 0;
    if (ok) {
        const int64_t *t = b[0].buf, *size = b[1].buf, *flow = b[2].buf;
        uint8_t *fate = b[3].buf, *reordered = b[7].buf;
        int64_t *send = b[4].buf, *dup = b[5].buf, *bit = b[6].buf;
        Py_BEGIN_ALLOW_THREADS for (Py_ssize_t i = 0; i < n; i++) {
            verdict_t v;
            if (decide(m, t[i], size[i], flow[i], &v) < 0) {
                failed = 1;
                break;
            }
            fate[i] = (uint8_t)v.fate;
            send[i] = v.send_at;
            dup[i] = v.dup_at;
            bit[i] = v.bit;
            reordered[i] = (uint8_t)v.reordered;
        }
        Py_END_ALLOW_THREADS
    }
    for (int i = 0; i < 8; i++) PyBuffer_Release(&b[i]);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "decide_many: buffers of n int64 / n uint8 expected");
        return NULL;
    }
    if (failed) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *Model_backlog(ModelObject *m, PyObject *args) {
    long long now;
    if (!PyArg_ParseTuple(args, "L", &now)) return NULL;
    long long count = 0;
    for (int64_t i = 0; i < m->p_count; i++) {
        int64_t t = m->heap_mode ? m->pending[i] : m->pending[(m->p_head + i) % m->p_cap];
        if (t > now) count++;
    }
    return PyLong_FromLongLong(count);
}

static PyMethodDef Model_methods[] = {
    {"decide", (PyCFunction)Model_decide, METH_VARARGS,
     "decide(now_ns, wire_size, flow=0) -> (fate, send_at_ns, duplicate_at_ns, corrupt_bit, "
     "reordered)"},
    {"decide_many", (PyCFunction)Model_decide_many, METH_VARARGS,
     "decide_many(t_in, size, flow, fate, send_at, duplicate_at, corrupt_bit, reordered)"},
    {"backlog", (PyCFunction)Model_backlog, METH_VARARGS,
     "backlog(now_ns) -> packets accepted but not yet departed"},
    {NULL, NULL, 0, NULL}};

static PyTypeObject ModelType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "lab.impairment._core.Model",
    .tp_basicsize = sizeof(ModelObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One direction's netem-semantics decisions (DirectionModel in C).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Model_init,
    .tp_dealloc = (destructor)Model_dealloc,
    .tp_methods = Model_methods,
};

/* ------------------------------------------------------------ forwarding ----- */

static inline int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* model.flow_key */
static inline int64_t flow_key(const uint8_t *p, ssize_t n, int to_server) {
    if (n < 20 || (p[0] >> 4) != 4) return 0;
    int64_t proto = p[9];
    if (proto == 6 || proto == 17) {
        ssize_t ihl = (p[0] & 0x0F) * 4;
        int first = !((p[6] & 0x1F) || p[7]);
        if (first && n >= ihl + 4) {
            ssize_t at = to_server ? ihl + 2 : ihl;
            return proto << 16 | (int64_t)p[at] << 8 | p[at + 1];
        }
    }
    return proto << 16;
}

/* forwarder._corrupt: flip one bit of the transport payload (else the L4 header) */
static void corrupt_packet(uint8_t *p, ssize_t n, int64_t bit) {
    if (n < 20) return;
    ssize_t ihl = (p[0] & 0x0F) * 4;
    int proto = p[9];
    ssize_t l4 = 0;
    if (proto == 6)
        l4 = n > ihl + 12 ? (p[ihl + 12] >> 4) * 4 : 0;
    else if (proto == 17)
        l4 = 8;
    ssize_t start = ihl + l4;
    if (n <= start) start = ihl;
    if (n <= start) return;
    int64_t span_bits = (int64_t)(n - start) * 8;
    int64_t position = bit % span_bits;
    p[start + position / 8] ^= (uint8_t)(1u << (position % 8));
}

typedef struct {
    int64_t t;
    int64_t seq;
    int64_t index; /* record row */
    uint8_t *data;
    int32_t len;
    int16_t fd_slot;
    int16_t is_copy;
} event_t;

typedef struct {
    int read_fd, write_fd, to_server, code;
    ModelObject *model;
} route_t;

typedef struct {
    PyObject_HEAD
    route_t routes[2];
    int wake_fd;
    int64_t spin_ns;
    /* timer heap */
    event_t *heap;
    int64_t h_count, h_cap, sequence;
    /* the record (ground truth), growable columns */
    int64_t n, cap;
    uint8_t *direction, *fate, *flags, *headers;
    int64_t *t_in, *t_out, *scheduled, *dup_t_out;
    int32_t *size;
    int64_t write_errors;
    uint8_t buf[MAX_PACKET];
} EngineObject;

static int record_grow(EngineObject *e) {
    int64_t cap = e->cap ? e->cap * 2 : 65536;
#define GROW(field, type)                                                \
    do {                                                                 \
        void *p = realloc(e->field, (size_t)cap * sizeof(type));         \
        if (!p) return -1;                                               \
        e->field = p;                                                    \
    } while (0)
    GROW(direction, uint8_t);
    GROW(fate, uint8_t);
    GROW(flags, uint8_t);
    GROW(t_in, int64_t);
    GROW(t_out, int64_t);
    GROW(scheduled, int64_t);
    GROW(dup_t_out, int64_t);
    GROW(size, int32_t);
#undef GROW
    void *h = realloc(e->headers, (size_t)cap * HEADER_BYTES);
    if (!h) return -1;
    e->headers = h;
    e->cap = cap;
    return 0;
}

static inline int ev_less(const event_t *a, const event_t *b) {
    return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

static int heap_push(EngineObject *e, event_t ev) {
    if (e->h_count == e->h_cap) {
        int64_t cap = e->h_cap ? e->h_cap * 2 : 4096;
        event_t *p = realloc(e->heap, (size_t)cap * sizeof(event_t));
        if (!p) return -1;
        e->heap = p;
        e->h_cap = cap;
    }
    int64_t i = e->h_count++;
    while (i > 0) {
        int64_t parent = (i - 1) / 2;
        if (!ev_less(&ev, &e->heap[parent])) break;
        e->heap[i] = e->heap[parent];
        i = parent;
    }
    e->heap[i] = ev;
    return 0;
}

static event_t heap_pop(EngineObject *e) {
    event_t top = e->heap[0];
    int64_t n = --e->h_count;
    if (n > 0) {
        event_t v = e->heap[n];
        int64_t i = 0;
        for (;;) {
            int64_t c = 2 * i + 1;
            if (c >= n) break;
            if (c + 1 < n && ev_less(&e->heap[c + 1], &e->heap[c])) c++;
            if (!ev_less(&e->heap[c], &v)) break;
            e->heap[i] = e->heap[c];
            i = c;
        }
        e->heap[i] = v;
    }
    return top;
}

static inline int64_t write_packet(EngineObject *e, int fd, const uint8_t *p, ssize_t n) {
    if (write(fd, p, (size_t)n) < 0) e->write_errors++;
    return now_ns();
}

static void send_due(EngineObject *e, int64_t now) {
    while (e->h_count && e->heap[0].t <= now) {
        event_t ev = heap_pop(e);
        int64_t sent = write_packet(e, e->routes[ev.fd_slot].write_fd, ev.data, ev.len);
        if (ev.is_copy)
            e->dup_t_out[ev.index] = sent;
        else
            e->t_out[ev.index] = sent;
        free(ev.data);
    }
}

static int hold(EngineObject *e, int64_t t, int slot, const uint8_t *p, ssize_t n,
                int64_t index, int is_copy) {
    event_t ev;
    ev.data = malloc((size_t)n > 0 ? (size_t)n : 1);
    if (!ev.data) return -1;
    memcpy(ev.data, p, (size_t)n);
    ev.t = t;
    ev.seq = ++e->sequence;
    ev.index = index;
    ev.len = (int32_t)n;
    ev.fd_slot = (int16_t)slot;
    ev.is_copy = (int16_t)is_copy;
    return heap_push(e, ev);
}

/* Forwarder._read_batch. Returns -1 on allocation failure. */
static int read_batch(EngineObject *e, int slot) {
    route_t *r = &e->routes[slot];
    ModelObject *m = r->model;
    uint8_t *p = e->buf;
    for (int b = 0; b < READ_BATCH; b++) {
        ssize_t n = read(r->read_fd, p, MAX_PACKET);
        if (n < 0) return 0; /* EAGAIN (or a vanished device): look again later */
        int64_t t_in = now_ns();
        int64_t key = m->clean ? 0 : flow_key(p, n, r->to_server);
        verdict_t v;
        if (decide(m, t_in, n, key, &v) < 0) return -1;
        if (e->n == e->cap && record_grow(e) < 0) return -1;
        int64_t i = e->n++;
        e->direction[i] = (uint8_t)r->code;
        e->t_in[i] = t_in;
        e->size[i] = (int32_t)n;
        e->fate[i] = (uint8_t)v.fate;
        uint8_t *h = e->headers + i * HEADER_BYTES;
        ssize_t keep = n < HEADER_BYTES ? n : HEADER_BYTES;
        memcpy(h, p, (size_t)keep);
        memset(h + keep, 0, (size_t)(HEADER_BYTES - keep));
        e->scheduled[i] = v.send_at;
        e->dup_t_out[i] = -1;
        uint8_t flags = v.reordered ? FLAG_REORDERED : 0;
        if (v.fate) {
            e->t_out[i] = -1;
            e->flags[i] = flags;
            continue;
        }
        if (v.bit >= 0) {
            corrupt_packet(p, n, v.bit);
            flags |= FLAG_CORRUPTED;
        }
        if (v.dup_at >= 0) flags |= FLAG_DUPLICATED;
        e->flags[i] = flags;
        if (v.send_at <= t_in && e->h_count == 0) {
            e->t_out[i] = write_packet(e, r->write_fd, p, n);
        } else {
            e->t_out[i] = -1;
            if (hold(e, v.send_at, slot, p, n, i, 0) < 0) return -1;
        }
        if (v.dup_at >= 0) {
            if (hold(e, v.dup_at, slot, p, n, i, 1) < 0) return -1;
            if (v.dup_at <= t_in) send_due(e, now_ns());
        }
    }
    return 0;
}

static void mark_pending(EngineObject *e) {
    while (e->h_count) {
        event_t ev = heap_pop(e);
        if (!ev.is_copy) e->flags[ev.index] |= FLAG_PENDING_AT_STOP;
        free(ev.data);
    }
}

/* Engine(routes, wake_fd, spin_ns): routes = ((read_fd, write_fd, model, to_server), x2),
 * index = the direction's code in the record. */
static int Engine_init(EngineObject *e, PyObject *args, PyObject *kwds) {
    PyObject *routes;
    int wake_fd;
    long long spin_ns = 0;
    if (!PyArg_ParseTuple(args, "O!i|L", &PyTuple_Type, &routes, &wake_fd, &spin_ns)) return -1;
    if (PyTuple_GET_SIZE(routes) != 2) {
        PyErr_SetString(PyExc_ValueError, "two routes expected");
        return -1;
    }
    for (int i = 0; i < 2; i++) {
        PyObject *model;
        int to_server;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(routes, i), "iiO!p", &e->routes[i].read_fd,
                              &e->routes[i].write_fd, &ModelType, &model, &to_server))
            return -1;
        Py_XDECREF(e->routes[i].model);
        Py_INCREF(model);
        e->routes[i].model = (ModelObject *)model;
        e->routes[i].to_server = to_server;
        e->routes[i].code = i;
    }
    e->wake_fd = wake_fd;
    e->spin_ns = spin_ns;
    /* sleep to deadlines with hrtimer precision, not the default 50 us slack */
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    return 0;
}

/* run(stop_at_ns) -> True when stopped (nothing held or grace over), False when the
 * wake fd fired (a signal: Python's handlers have run when this returns). */
static PyObject *Engine_run(EngineObject *e, PyObject *args) {
    long long stop_at;
    if (!PyArg_ParseTuple(args, "L", &stop_at)) return NULL;
    int done = 0, failed = 0;
    Py_BEGIN_ALLOW_THREADS for (;;) {
        int64_t now = now_ns();
        if (stop_at >= 0 && (e->h_count == 0 || now >= stop_at)) {
            mark_pending(e);
            done = 1;
            break;
        }
        struct timespec ts, *tsp = NULL;
        if (e->h_count) {
            int64_t wake = e->heap[0].t;
            if (stop_at >= 0 && stop_at < wake) wake = stop_at;
            int64_t wait = wake - now;
            if (wait < 0) wait = 0;
            if (wait <= e->spin_ns) wait = 0; /* close enough: spin */
            else wait -= e->spin_ns;
            ts.tv_sec = wait / 1000000000LL;
            ts.tv_nsec = wait % 1000000000LL;
            tsp = &ts;
        }
        struct pollfd fds[3] = {{e->routes[0].read_fd, POLLIN, 0},
                                {e->routes[1].read_fd, POLLIN, 0},
                                {e->wake_fd, POLLIN, 0}};
        int rc = ppoll(fds, 3, tsp, NULL);
        if (rc < 0) {
            if (errno == EINTR) break;
            continue;
        }
        int woke = 0;
        for (int i = 0; i < 2; i++)
            if (fds[i].revents & (POLLIN | POLLERR | POLLHUP)) {
                if (read_batch(e, i) < 0) {
                    failed = 1;
                    break;
                }
            }
        if (failed) break;
        if (fds[2].revents & POLLIN) {
            uint8_t drain[512];
            while (read(e->wake_fd, drain, sizeof drain) > 0) {
            }
            woke = 1;
        }
        if (e->h_count) send_due(e, now_ns());
        if (woke) break;
    }
    Py_END_ALLOW_THREADS if (failed) return PyErr_NoMemory();
    if (!done && PyErr_CheckSignals() < 0) return NULL;
    return PyBool_FromLong(done);
}

static PyObject *Engine_record(EngineObject *e, PyObject *noargs) {
    Py_ssize_t n = (Py_ssize_t)e->n;
    return Py_BuildValue(
        "{s:y#,s:y#,s:y#,s:y#,s:y#,s:y#,s:y#,s:y#,s:y#}", "direction", (char *)e->direction, n,
        "t_in_ns", (char *)e->t_in, n * 8, "t_out_ns", (char *)e->t_out, n * 8, "scheduled_ns",
        (char *)e->scheduled, n * 8, "dup_t_out_ns", (char *)e->dup_t_out, n * 8, "size",
        (char *)e->size, n * 4, "fate", (char *)e->fate, n, "flags", (char *)e->flags, n,
        "headers", (char *)e->headers, n * HEADER_BYTES);
}

static PyObject *Engine_get_write_errors(EngineObject *e, void *closure) {
    return PyLong_FromLongLong(e->write_errors);
}

static PyObject *Engine_get_packets(EngineObject *e, void *closure) {
    return PyLong_FromLongLong(e->n);
}

static void Engine_dealloc(EngineObject *e) {
    while (e->h_count) free(heap_pop(e).data);
    free(e->heap);
    free(e->direction);
    free(e->fate);
    free(e->flags);
    free(e->headers);
    free(e->t_in);
    free(e->t_out);
    free(e->scheduled);
    free(e->dup_t_out);
    free(e->size);
    for (int i = 0; i < 2; i++) Py_XDECREF(e->routes[i].model);
    Py_TYPE(e)->tp_free((PyObject *)e);
}

static PyMethodDef Engine_methods[] = {
    {"run", (PyCFunction)Engine_run, METH_VARARGS,
     "run(stop_at_ns) -> True when stopped, False when woken by a signal (-1: no stop yet)"},
    {"record", (PyCFunction)Engine_record, METH_NOARGS,
     "The ground-truth columns as bytes (native-endian arrays)."},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef Engine_getset[] = {
    {"write_errors", (getter)Engine_get_write_errors, NULL, "failed TUN writes", NULL},
    {"packets", (getter)Engine_get_packets, NULL, "packets recorded so far", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject EngineType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "lab.impairment._core.Engine",
    .tp_basicsize = sizeof(EngineObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The TUN-to-TUN forwarding loop in C (Forwarder in forwarder.py).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Engine_init,
    .tp_dealloc = (destructor)Engine_dealloc,
    .tp_methods = Engine_methods,
    .tp_getset = Engine_getset,
};

/* ------------------------------------------------------------ test hooks ----- */

/* seed_state(seed_words, spawn_key) -> (state, inc): checks seeding against numpy */
static PyObject *core_seed_state(PyObject *self, PyObject *args) {
    PyObject *words, *spawn;
    if (!PyArg_ParseTuple(args, "O!O!", &PyTuple_Type, &words, &PyTuple_Type, &spawn))
        return NULL;
    uint32_t w[24], s[8];
    int nw = (int)PyTuple_GET_SIZE(words), ns = (int)PyTuple_GET_SIZE(spawn);
    if (nw < 1 || nw > 24 || ns > 8) {
        PyErr_SetString(PyExc_ValueError, "1-24 seed words, at most 8 key words");
        return NULL;
    }
    for (int i = 0; i < nw; i++) w[i] = (uint32_t)PyLong_AsUnsignedLong(PyTuple_GET_ITEM(words, i));
    for (int i = 0; i < ns; i++) s[i] = (uint32_t)PyLong_AsUnsignedLong(PyTuple_GET_ITEM(spawn, i));
    if (PyErr_Occurred()) return NULL;
    pcg64_t g;
    seed_pcg(&g, w, nw, s, ns);
    char hex[2][40];
    snprintf(hex[0], sizeof hex[0], "%016llx%016llx", (unsigned long long)(g.state >> 64),
             (unsigned long long)g.state);
    snprintf(hex[1], sizeof hex[1], "%016llx%016llx", (unsigned long long)(g.inc >> 64),
             (unsigned long long)g.inc);
    PyObject *a = PyLong_FromString(hex[0], NULL, 16), *b = PyLong_FromString(hex[1], NULL, 16);
    if (!a || !b) {
        Py_XDECREF(a);
        Py_XDECREF(b);
        return NULL;
    }
    return Py_BuildValue("(NN)", a, b);
}

static PyMethodDef core_methods[] = {
    {"seed_state", core_seed_state, METH_VARARGS,
     "seed_state(seed_words, spawn_key) -> (state, inc) of the PCG64 numpy would seed"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef core_module = {PyModuleDef_HEAD_INIT, "_core",
                                         "Compiled impairment core (see _core.c).", -1,
                                         core_methods};

PyMODINIT_FUNC PyInit__core(void) {
    if (PyType_Ready(&ModelType) < 0 || PyType_Ready(&EngineType) < 0) return NULL;
    PyObject *mod = PyModule_Create(&core_module);
    if (!mod) return NULL;
    Py_INCREF(&ModelType);
    Py_INCREF(&EngineType);
    if (PyModule_AddObject(mod, "Model", (PyObject *)&ModelType) < 0 ||
        PyModule_AddObject(mod, "Engine", (PyObject *)&EngineType) < 0 ||
        PyModule_AddIntConstant(mod, "BLOCK_SIZE", BLOCK_SIZE) < 0 ||
        PyModule_AddIntConstant(mod, "HEADER_BYTES", HEADER_BYTES) < 0) {
        Py_DECREF(mod);
        return NULL;
    }
    return mod;
}

//go:build linux && cgo && seccomp

package runtime

// A cache of the BPF program libseccomp generates for a container's
// seccomp profile. libcontainer's init builds the filter rule by rule and
// exports it with seccomp_export_bpf on every start, and the export (BPF
// generation for Docker's profile on three architectures) is most of the
// seccomp cost of a start. libcontainer has no hook for this, so the cache
// sits at the C link level: GNU ld's --wrap sends every libseccomp call of
// this binary whose result depends on, or that changes, a filter context
// or libseccomp's global state to a __wrap_ function below.
//
// Recording. A call is made for real and recorded with its arguments and
// its result (out-parameters included). The export then serves a stored
// program only when the recorded sequence, together with libseccomp's
// version, API level and native architecture, equals the stored key byte
// for byte: the same calls into the same library give the same program,
// so what the caller gets is what libseccomp would have produced.
//
// Deferring. Building the filter database for the rules costs several ms
// that a served program makes useless. So while the calls made so far
// equal the stored key's first records, a call equal to the key's next
// record (function, every argument) is not made: the caller gets the
// result recorded in the key, which is what the real call returns, since
// libseccomp is deterministic given the same library, API level and
// native arch (checked against the key before deferring starts) and the
// same calls on a fresh context. Reads of a context's state (arch_exist,
// attr_get) are records like the rest, so a deferred caller never sees the
// real, still empty, context. If the whole key matches at the export, the
// program is served and no filter database was ever built. On the first
// call that does not match (or anything else this code does not serve),
// every deferred call is first made for real on the real context, in
// order, each result checked against the one already handed out, and the
// session goes on recording as above. A replayed result that differs
// (impossible unless libseccomp is not deterministic after all) means the
// caller was told something the library would not have said: from then
// on every call on that context fails, the export included, so the
// container cannot start with a filter that might not match.
//
// After a served export, reads of the context are answered from a snapshot
// of every attribute and architecture, taken from the real context when
// the program was stored (libcontainer reads the filter's flags after the
// export); anything else makes the deferred calls real first.
//
// The cache file lives in the container's directory next to config.json
// (written by the runtime, never visible to the container); the init
// reads it before libcontainer pivots into the rootfs, and on a miss
// writes the new (key, program, snapshot) back through a dir fd it opened
// then. The monitor shares files between containers through
// RUN_ROOT/seccomp.

/*
#cgo pkg-config: libseccomp
#cgo LDFLAGS: -Wl,--wrap=seccomp_init -Wl,--wrap=seccomp_reset -Wl,--wrap=seccomp_release -Wl,--wrap=seccomp_merge
#cgo LDFLAGS: -Wl,--wrap=seccomp_arch_add -Wl,--wrap=seccomp_arch_remove -Wl,--wrap=seccomp_attr_set
#cgo LDFLAGS: -Wl,--wrap=seccomp_rule_add_array -Wl,--wrap=seccomp_rule_add_exact_array -Wl,--wrap=seccomp_syscall_priority
#cgo LDFLAGS: -Wl,--wrap=seccomp_arch_exist -Wl,--wrap=seccomp_attr_get
#cgo LDFLAGS: -Wl,--wrap=seccomp_load -Wl,--wrap=seccomp_export_pfc -Wl,--wrap=seccomp_notify_fd
#cgo LDFLAGS: -Wl,--wrap=seccomp_api_set -Wl,--wrap=seccomp_precompute
#cgo LDFLAGS: -Wl,--wrap=seccomp_transaction_start -Wl,--wrap=seccomp_transaction_commit -Wl,--wrap=seccomp_transaction_reject
#cgo LDFLAGS: -Wl,--wrap=seccomp_export_bpf -Wl,--wrap=seccomp_export_bpf_mem

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <seccomp.h>

// The real libseccomp functions. The ones libseccomp-golang references
// weakly (added after 2.5, absent from the 2.5.4 we link, or optional) are
// weak here as well: their wrapper must then behave as libseccomp-golang's
// compat_* check would have without the wrap (which now sees the wrapper,
// never NULL), i.e. return -EOPNOTSUPP.
extern scmp_filter_ctx __real_seccomp_init(uint32_t def_action);
extern int __real_seccomp_reset(scmp_filter_ctx ctx, uint32_t def_action);
extern void __real_seccomp_release(scmp_filter_ctx ctx);
extern int __real_seccomp_merge(scmp_filter_ctx dst, scmp_filter_ctx src);
extern int __real_seccomp_arch_add(scmp_filter_ctx ctx, uint32_t arch);
extern int __real_seccomp_arch_remove(scmp_filter_ctx ctx, uint32_t arch);
extern int __real_seccomp_arch_exist(const scmp_filter_ctx ctx, uint32_t arch);
extern int __real_seccomp_attr_set(scmp_filter_ctx ctx, enum scmp_filter_attr attr, uint32_t value);
extern int __real_seccomp_attr_get(const scmp_filter_ctx ctx, enum scmp_filter_attr attr, uint32_t *value);
extern int __real_seccomp_rule_add_array(scmp_filter_ctx ctx, uint32_t action, int syscall, unsigned int arg_cnt, const struct scmp_arg_cmp *arg_array);
extern int __real_seccomp_rule_add_exact_array(scmp_filter_ctx ctx, uint32_t action, int syscall, unsigned int arg_cnt, const struct scmp_arg_cmp *arg_array);
extern int __real_seccomp_syscall_priority(scmp_filter_ctx ctx, int syscall, uint8_t priority);
extern int __real_seccomp_load(const scmp_filter_ctx ctx);
extern int __real_seccomp_export_pfc(const scmp_filter_ctx ctx, int fd);
extern int __real_seccomp_notify_fd(const scmp_filter_ctx ctx) __attribute__((weak));
extern int __real_seccomp_api_set(unsigned int level) __attribute__((weak));
extern int __real_seccomp_precompute(scmp_filter_ctx ctx) __attribute__((weak));
extern int __real_seccomp_transaction_start(const scmp_filter_ctx ctx) __attribute__((weak));
extern int __real_seccomp_transaction_commit(const scmp_filter_ctx ctx) __attribute__((weak));
extern void __real_seccomp_transaction_reject(const scmp_filter_ctx ctx) __attribute__((weak));
extern int __real_seccomp_export_bpf(const scmp_filter_ctx ctx, int fd);
extern int __real_seccomp_export_bpf_mem(const scmp_filter_ctx ctx, void *buf, size_t *len) __attribute__((weak));

// Record ids: the first field of every record in a key. A record is the
// id, the call's arguments, then its result; the id fixes the layout, so a
// key is a self-delimiting sequence of records.
enum {
	SCC_INIT = 1, SCC_RESET, SCC_ARCH_ADD, SCC_ARCH_REMOVE, SCC_ATTR_SET,
	SCC_RULE_ADD, SCC_RULE_ADD_EXACT, SCC_PRIORITY, SCC_KEY_END,
	SCC_ARCH_EXIST, SCC_ATTR_GET,
};

// Session states. Arming starts IDLE; the first seccomp_init starts
// DEFERRING its context if the stored key begins with that very call (and
// was made with this library), else RECORDING. DEFERRING becomes
// RECORDING once the deferred calls are made for real, or SERVED when the
// export serves the stored program without them. The export of the
// recorded context, its release, or anything unexpected ends in DONE,
// after which every call passes through; a replayed call whose result
// differs from the one handed out ends in DIVERGED, where every call on
// the context fails.
enum { SCC_IDLE, SCC_RECORDING, SCC_DONE, SCC_DEFERRING, SCC_SERVED, SCC_DIVERGED };

#define SCC_MAGIC "BRTHSCC1"
#define SCC_VERSION 2u
#define SCC_HDR 24       // magic[8] version key_len prog_len snap_len
#define SCC_SUM 8        // FNV-1a 64 of all preceding bytes
#define SCC_MAX_FILE (1u << 20)
#define SCC_FILE "seccomp.cache"
#define SCC_TMP "seccomp.cache.tmp"
#define SCC_INIT_LEN 12  // SCC_INIT def_action 1
#define SCC_TRAILER 24   // SCC_KEY_END major minor micro api native
#define SCC_ECANCELED ((uint32_t)-ECANCELED)

static pthread_mutex_t scc_mu = PTHREAD_MUTEX_INITIALIZER;
static int scc_active;   // armed in this process; read unlocked as a fast path
static int scc_state = SCC_DONE;
static scmp_filter_ctx scc_ctx;
static unsigned char *scc_rec;
static size_t scc_rec_len, scc_rec_cap;
static int scc_rec_fail;
static unsigned char *scc_cand;  // the validated file, or NULL
static size_t scc_cand_key, scc_cand_prog, scc_cand_snap;
static size_t scc_pos;           // DEFERRING/SERVED: key bytes deferred
static int scc_dirfd = -1;

// Counters, for tests and for checking that the wrap is in effect.
static uint64_t scc_calls, scc_hits, scc_misses, scc_writes, scc_poisons;
static uint64_t scc_deferred, scc_replays, scc_replayed, scc_divergences, scc_snap_served;
static uint64_t scc_real_rule_adds; // real rule adds made for an armed caller

// Test tap: the program served to the caller's fd by this code, and a
// second, independent real export of the same filter taken afterwards.
static int scc_tap;
static unsigned char *scc_tap_served, *scc_tap_real;
static size_t scc_tap_served_len, scc_tap_real_len;

static uint64_t scc_fnv(const unsigned char *p, size_t n)
{
	uint64_t h = 14695981039346656037ull;
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 1099511628211ull;
	}
	return h;
}

// scc_buf_put appends to a growing buffer; on allocation failure it sets
// *fail and drops this and every later append.
static void scc_buf_put(unsigned char **b, size_t *len, size_t *cap, int *fail, const void *p, size_t n)
{
	if (*fail)
		return;
	if (*len + n > *cap) {
		size_t c = *cap ? *cap : 4096;
		while (c < *len + n)
			c *= 2;
		unsigned char *r = realloc(*b, c);
		if (r == NULL) {
			*fail = 1;
			return;
		}
		*b = r;
		*cap = c;
	}
	memcpy(*b + *len, p, n);
	*len += n;
}

static void scc_put(const void *p, size_t n) { scc_buf_put(&scc_rec, &scc_rec_len, &scc_rec_cap, &scc_rec_fail, p, n); }

// A call as its wrapper sees it: the record's input part (id, arguments)
// in b; ok is 0 for a call that cannot be recorded (too many or missing
// rule conditions, NULL out-parameter), which is never deferred.
#define SCC_CALL_MAX 192
struct scc_call {
	unsigned char b[SCC_CALL_MAX];
	size_t n;
	int ok;
};

static void scc_c32(struct scc_call *c, uint32_t v)
{
	memcpy(c->b + c->n, &v, sizeof v);
	c->n += sizeof v;
}

static void scc_c64(struct scc_call *c, uint64_t v)
{
	memcpy(c->b + c->n, &v, sizeof v);
	c->n += sizeof v;
}

static void scc_call_start(struct scc_call *c, uint32_t id)
{
	c->n = 0;
	c->ok = 1;
	scc_c32(c, id);
}

// scc_result_ok says whether a result is one the recorder keeps (it
// poisons the session on any other), and so one a deferred call may hand
// out: success, or -EEXIST where libseccomp uses it as an answer (an arch
// already there or not there; arch_exist's "absent"). A stored key with
// anything else is never served from.
static int scc_result_ok(uint32_t id, const uint32_t *res)
{
	switch (id) {
	case SCC_ARCH_ADD:
	case SCC_ARCH_REMOVE:
	case SCC_ARCH_EXIST:
		return res[0] == 0 || res[0] == (uint32_t)-EEXIST;
	case SCC_RESET:
	case SCC_ATTR_SET:
	case SCC_RULE_ADD:
	case SCC_RULE_ADD_EXACT:
	case SCC_PRIORITY:
	case SCC_ATTR_GET:
		return res[0] == 0;
	}
	return 0;
}

static void scc_close_dir(void)
{
	if (scc_dirfd >= 0) {
		close(scc_dirfd);
		scc_dirfd = -1;
	}
}

static void scc_free_rec(void)
{
	free(scc_rec);
	scc_rec = NULL;
	scc_rec_len = scc_rec_cap = 0;
}

// scc_finish ends the session: the dir fd (the one host fd this code holds)
// is closed as soon as the export is done, long before libcontainer execs
// the container's process. It could not reach that process anyway: it is
// O_CLOEXEC, and libcontainer's standard init (standard_init_linux.go)
// closes every fd but the passed ones with UnsafeCloseFrom right before
// exec, which also covers a session that never exports (no seccomp).
static void scc_finish(void)
{
	scc_state = SCC_DONE;
	scc_ctx = NULL;
	scc_pos = 0;
	scc_close_dir();
	free(scc_cand);
	scc_cand = NULL;
	scc_cand_key = scc_cand_prog = scc_cand_snap = 0;
	scc_free_rec();
}

static void scc_tap_set(unsigned char **dst, size_t *dlen, const unsigned char *p, size_t n)
{
	free(*dst);
	*dst = NULL;
	*dlen = 0;
	if (p != NULL && (*dst = malloc(n)) != NULL) {
		memcpy(*dst, p, n);
		*dlen = n;
	}
}

// scc_real_to_mem runs the real export into a memfd and returns the
// program, or NULL.
static unsigned char *scc_real_to_mem(const scmp_filter_ctx ctx, size_t *len)
{
	unsigned char *b = NULL;
	int mfd = memfd_create("berth-seccomp", MFD_CLOEXEC);
	if (mfd < 0)
		return NULL;
	if (__real_seccomp_export_bpf(ctx, mfd) == 0) {
		off_t n = lseek(mfd, 0, SEEK_END);
		if (n > 0 && n <= SCC_MAX_FILE && (b = malloc(n)) != NULL) {
			if (pread(mfd, b, n, 0) != n) {
				free(b);
				b = NULL;
			} else {
				*len = n;
			}
		}
	}
	close(mfd);
	return b;
}

// scc_replay makes the calls of n bytes of records for real on ctx, in
// order, and returns 0 if every one returned the recorded result (and
// out-value), -1 at the first that did not or at a record it cannot parse.
// count says whether the calls are the caller's (counted as such).
static int scc_replay(scmp_filter_ctx ctx, const unsigned char *p, size_t n, int count)
{
	size_t off = 0;
#define SCC_GET(v)                                                           \
	do {                                                                     \
		if (n - off < sizeof(v))                                             \
			return -1;                                                       \
		memcpy(&(v), p + off, sizeof(v));                                    \
		off += sizeof(v);                                                    \
	} while (0)
	while (off < n) {
		uint32_t id, a, b, want;
		int rc;
		SCC_GET(id);
		switch (id) {
		case SCC_RESET:
			SCC_GET(a);
			SCC_GET(want);
			rc = __real_seccomp_reset(ctx, a);
			break;
		case SCC_ARCH_ADD:
		case SCC_ARCH_REMOVE:
		case SCC_ARCH_EXIST:
			SCC_GET(a);
			SCC_GET(want);
			if (id == SCC_ARCH_ADD)
				rc = __real_seccomp_arch_add(ctx, a);
			else if (id == SCC_ARCH_REMOVE)
				rc = __real_seccomp_arch_remove(ctx, a);
			else
				rc = __real_seccomp_arch_exist(ctx, a);
			break;
		case SCC_ATTR_SET:
			SCC_GET(a);
			SCC_GET(b);
			SCC_GET(want);
			rc = __real_seccomp_attr_set(ctx, (enum scmp_filter_attr)a, b);
			break;
		case SCC_ATTR_GET: {
			uint32_t wantv, v = 0;
			SCC_GET(a);
			SCC_GET(want);
			SCC_GET(wantv);
			rc = __real_seccomp_attr_get(ctx, (enum scmp_filter_attr)a, &v);
			if (v != wantv)
				return -1;
			break;
		}
		case SCC_RULE_ADD:
		case SCC_RULE_ADD_EXACT: {
			struct scmp_arg_cmp args[6];
			uint32_t action, sc, cnt;
			memset(args, 0, sizeof args);
			SCC_GET(action);
			SCC_GET(sc);
			SCC_GET(cnt);
			if (cnt > 6)
				return -1;
			for (uint32_t i = 0; i < cnt; i++) {
				uint32_t arg, op;
				SCC_GET(arg);
				SCC_GET(op);
				SCC_GET(args[i].datum_a);
				SCC_GET(args[i].datum_b);
				args[i].arg = arg;
				args[i].op = (enum scmp_compare)op;
			}
			SCC_GET(want);
			if (id == SCC_RULE_ADD)
				rc = __real_seccomp_rule_add_array(ctx, action, (int)sc, cnt, cnt ? args : NULL);
			else
				rc = __real_seccomp_rule_add_exact_array(ctx, action, (int)sc, cnt, cnt ? args : NULL);
			if (count)
				scc_real_rule_adds++;
			break;
		}
		case SCC_PRIORITY:
			SCC_GET(a);
			SCC_GET(b);
			SCC_GET(want);
			rc = __real_seccomp_syscall_priority(ctx, (int)a, (uint8_t)b);
			break;
		default:
			return -1;
		}
		if ((uint32_t)rc != want)
			return -1;
		if (count)
			scc_replayed++;
	}
#undef SCC_GET
	return 0;
}

// scc_verify_served checks, after a served context's deferred calls were
// replayed into it, that its real export is the program served and that
// the snapshot its reads were answered from is what it reads.
static int scc_verify_served(void)
{
	size_t n = 0;
	unsigned char *prog = scc_real_to_mem(scc_ctx, &n);
	int ok = prog != NULL && n == scc_cand_prog && memcmp(prog, scc_cand + SCC_HDR + scc_cand_key, n) == 0;
	free(prog);
	if (ok)
		ok = scc_replay(scc_ctx, scc_cand + SCC_HDR + scc_cand_key + scc_cand_prog, scc_cand_snap, 0) == 0;
	return ok;
}

// scc_materialize makes a DEFERRING or SERVED context real: its deferred
// calls are replayed into it and checked. A DEFERRING session then goes
// on RECORDING; a SERVED one is DONE. Returns 0 if the context is real
// (or there was nothing deferred), -1 if the session is DIVERGED.
static int scc_materialize(void)
{
	if (scc_state == SCC_DIVERGED)
		return -1;
	if (scc_state != SCC_DEFERRING && scc_state != SCC_SERVED)
		return 0;
	int served = scc_state == SCC_SERVED;
	scc_replays++;
	int ok = scc_pos >= SCC_INIT_LEN &&
		 scc_replay(scc_ctx, scc_cand + SCC_HDR + SCC_INIT_LEN, scc_pos - SCC_INIT_LEN, 1) == 0;
	if (ok && served)
		ok = scc_verify_served();
	if (!ok) {
		scc_divergences++;
		if (served) {
			// The export already returned a program that a real
			// export of these calls does not give, and the caller may
			// have loaded it without libseccomp: no error can reach it
			// now, so the process (a container init, before its exec)
			// must not go on.
			static const char msg[] = "berth: seccomp cache: served program diverges from libseccomp's; aborting\n";
			if (write(2, msg, sizeof msg - 1) < 0) {
			}
			abort();
		}
		// Keep only the context: every later call on it fails.
		scc_state = SCC_DIVERGED;
		scc_pos = 0;
		scc_close_dir();
		free(scc_cand);
		scc_cand = NULL;
		scc_free_rec();
		return -1;
	}
	if (served)
		scc_finish();
	else
		scc_state = SCC_RECORDING;
	return 0;
}

// scc_poison ends the session after anything this code does not expect,
// once the deferred calls (if any) are real. A DIVERGED session stays so.
static void scc_poison(void)
{
	if (scc_materialize() != 0)
		return;
	scc_poisons++;
	scc_finish();
}

// scc_live says whether the session still follows its context's calls.
static int scc_live(void)
{
	return scc_state == SCC_RECORDING || scc_state == SCC_DEFERRING || scc_state == SCC_SERVED;
}

// scc_track says, after a real call, whether it is to be recorded,
// poisoning the session for a call on a context other than the recorded
// one. Only RECORDING records: scc_defer left no other live state.
static int scc_track(scmp_filter_ctx ctx)
{
	if (scc_state != SCC_RECORDING)
		return 0;
	if (ctx != scc_ctx) {
		scc_poison();
		return 0;
	}
	return 1;
}

static void scc_record(const struct scc_call *c, const uint32_t *res, int nres)
{
	scc_put(c->b, c->n);
	scc_put(res, 4 * (size_t)nres);
}

// scc_snap_find answers a read of a SERVED context from the stored
// snapshot: 1 and the result if it has the same read with a result that
// can be handed out.
static int scc_snap_find(const struct scc_call *c, int nres, uint32_t *res)
{
	const unsigned char *p = scc_cand + SCC_HDR + scc_cand_key + scc_cand_prog;
	size_t n = scc_cand_snap, off = 0;
	uint32_t id;
	memcpy(&id, c->b, 4);
	if (!c->ok || (id != SCC_ARCH_EXIST && id != SCC_ATTR_GET))
		return 0;
	while (off + 4 <= n) {
		uint32_t rid;
		memcpy(&rid, p + off, 4);
		size_t len = rid == SCC_ARCH_EXIST ? 12 : rid == SCC_ATTR_GET ? 16 : 0;
		if (len == 0 || off + len > n)
			return 0;
		if (rid == id && len == c->n + 4 * (size_t)nres && memcmp(p + off, c->b, c->n) == 0) {
			memcpy(res, p + off + c->n, 4 * (size_t)nres);
			return scc_result_ok(id, res);
		}
		off += len;
	}
	return 0;
}

// scc_defer decides a recorded call's fate before any real call: 1 if it
// is answered here (res: its result; for a DIVERGED context, -ECANCELED),
// 0 if the caller is to make it for real (and record it if scc_track
// says so). Anything not answered makes deferred calls real first, so
// that real calls always reach libseccomp in the caller's order.
static int scc_defer(scmp_filter_ctx ctx, const struct scc_call *c, int nres, uint32_t *res)
{
	switch (scc_state) {
	case SCC_DEFERRING: {
		size_t need = c->n + 4 * (size_t)nres;
		const unsigned char *p = scc_cand + SCC_HDR + scc_pos;
		uint32_t id;
		memcpy(&id, c->b, 4);
		if (ctx == scc_ctx && c->ok && scc_pos + need <= scc_cand_key && memcmp(p, c->b, c->n) == 0) {
			memcpy(res, p + c->n, 4 * (size_t)nres);
			if (scc_result_ok(id, res)) {
				scc_record(c, res, nres);
				scc_pos += need;
				scc_deferred++;
				return 1;
			}
		}
		break;
	}
	case SCC_SERVED:
		if (ctx == scc_ctx && scc_snap_find(c, nres, res)) {
			scc_snap_served++;
			return 1;
		}
		break;
	case SCC_DIVERGED:
		if (ctx != scc_ctx)
			return 0;
		res[0] = SCC_ECANCELED;
		return 1;
	default:
		return 0;
	}
	if (scc_materialize() != 0 && ctx == scc_ctx) {
		res[0] = SCC_ECANCELED;
		return 1;
	}
	return 0;
}

// scc_check validates a cache file image and, if good, returns 1 and the
// key, program and snapshot lengths.
static int scc_check(const unsigned char *b, size_t n, size_t *key, size_t *prog, size_t *snap)
{
	uint32_t ver, kl, pl, sl;
	uint64_t sum;
	if (n < SCC_HDR + SCC_SUM || n > SCC_MAX_FILE || memcmp(b, SCC_MAGIC, 8) != 0)
		return 0;
	memcpy(&ver, b + 8, 4);
	memcpy(&kl, b + 12, 4);
	memcpy(&pl, b + 16, 4);
	memcpy(&sl, b + 20, 4);
	if (ver != SCC_VERSION || kl < SCC_INIT_LEN + SCC_TRAILER || kl % 4 != 0 || pl == 0 || pl % 8 != 0 || sl % 4 != 0)
		return 0;
	if ((uint64_t)SCC_HDR + kl + pl + sl + SCC_SUM != n)
		return 0;
	memcpy(&sum, b + n - SCC_SUM, SCC_SUM);
	if (sum != scc_fnv(b, n - SCC_SUM))
		return 0;
	*key = kl;
	*prog = pl;
	*snap = sl;
	return 1;
}

int berth_scc_valid(const void *b, size_t n)
{
	size_t k, p, s;
	return scc_check(b, n, &k, &p, &s);
}

// scc_load reads and validates dirfd's cache file; NULL if it is absent
// or unfit in any way (a miss, never an error). Only a regular file owned
// by root and writable by nobody else is read: the container dir is the
// runtime's, and this keeps it so even if its mode were loosened.
static unsigned char *scc_load(int dirfd, size_t *key, size_t *prog, size_t *snap)
{
	struct stat st;
	unsigned char *b = NULL;
	int fd = openat(dirfd, SCC_FILE, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != 0 || (st.st_mode & 022) != 0 ||
	    st.st_size < SCC_HDR + SCC_SUM || st.st_size > SCC_MAX_FILE)
		goto out;
	b = malloc(st.st_size);
	if (b == NULL)
		goto out;
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, b + got, st.st_size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += r;
	}
	if (got != (size_t)st.st_size || !scc_check(b, got, key, prog, snap)) {
		free(b);
		b = NULL;
	}
out:
	close(fd);
	return b;
}

// berth_scc_arm arms the cache in a container's init, whose cwd is the
// container's rootfs on the host: ".." is the container dir. It must hold
// config.json (so this is a container dir of ours and not, say, a rootfs
// placed elsewhere) and be root's and writable by nobody else; otherwise
// nothing is armed. Returns 1 if armed.
int berth_scc_arm(void)
{
	struct stat st;
	int dfd = open("..", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return 0;
	if (fstat(dfd, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != 0 || (st.st_mode & 022) != 0 ||
	    fstatat(dfd, "config.json", &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) || st.st_uid != 0) {
		close(dfd);
		return 0;
	}
	size_t k = 0, p = 0, s = 0;
	unsigned char *c = scc_load(dfd, &k, &p, &s);
	pthread_mutex_lock(&scc_mu);
	scc_finish();
	scc_dirfd = dfd;
	scc_cand = c;
	scc_cand_key = k;
	scc_cand_prog = p;
	scc_cand_snap = s;
	scc_rec_fail = 0;
	scc_state = SCC_IDLE;
	__atomic_store_n(&scc_active, 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&scc_mu);
	return 1;
}

// scc_trailer is the end of every key: what besides the calls decides
// libseccomp's results and program.
static void scc_trailer(unsigned char out[SCC_TRAILER])
{
	const struct scmp_version *v = seccomp_version();
	uint32_t t[6] = {SCC_KEY_END, v ? v->major : 0, v ? v->minor : 0, v ? v->micro : 0,
			 seccomp_api_get(), seccomp_arch_native()};
	memcpy(out, t, sizeof t);
}

// scc_snapshot reads every attribute and architecture of a real context,
// as records, for a served context's later reads. Returns NULL on failure.
static unsigned char *scc_snapshot(const scmp_filter_ctx ctx, size_t *len)
{
	static const uint32_t archs[] = {
		SCMP_ARCH_NATIVE, SCMP_ARCH_X86, SCMP_ARCH_X86_64, SCMP_ARCH_X32, SCMP_ARCH_ARM, SCMP_ARCH_AARCH64,
		SCMP_ARCH_MIPS, SCMP_ARCH_MIPS64, SCMP_ARCH_MIPS64N32, SCMP_ARCH_MIPSEL, SCMP_ARCH_MIPSEL64,
		SCMP_ARCH_MIPSEL64N32, SCMP_ARCH_PPC, SCMP_ARCH_PPC64, SCMP_ARCH_PPC64LE, SCMP_ARCH_S390,
		SCMP_ARCH_S390X, SCMP_ARCH_PARISC, SCMP_ARCH_PARISC64, SCMP_ARCH_RISCV64,
#ifdef SCMP_ARCH_LOONGARCH64
		SCMP_ARCH_LOONGARCH64,
#endif
#ifdef SCMP_ARCH_M68K
		SCMP_ARCH_M68K,
#endif
#ifdef SCMP_ARCH_SH
		SCMP_ARCH_SH, SCMP_ARCH_SHEB,
#endif
	};
	unsigned char *b = NULL;
	size_t cap = 0;
	int fail = 0;
	*len = 0;
	for (uint32_t attr = 0; attr < 16; attr++) {
		uint32_t v = 0;
		int rc = __real_seccomp_attr_get(ctx, (enum scmp_filter_attr)attr, &v);
		uint32_t r[4] = {SCC_ATTR_GET, attr, (uint32_t)rc, v};
		scc_buf_put(&b, len, &cap, &fail, r, sizeof r);
	}
	for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++) {
		uint32_t r[3] = {SCC_ARCH_EXIST, archs[i], (uint32_t)__real_seccomp_arch_exist(ctx, archs[i])};
		scc_buf_put(&b, len, &cap, &fail, r, sizeof r);
	}
	if (fail) {
		free(b);
		*len = 0;
		return NULL;
	}
	return b;
}

// scc_store writes (key, program, snapshot) to the container dir
// atomically: a temp file, then rename. No fsync: a torn file fails its
// checksum and is a miss.
static void scc_store(const unsigned char *prog, size_t plen, const unsigned char *snap, size_t slen)
{
	if (scc_dirfd < 0 || scc_rec_fail)
		return;
	size_t n = SCC_HDR + scc_rec_len + plen + slen + SCC_SUM;
	if (n > SCC_MAX_FILE)
		return;
	unsigned char *b = malloc(n);
	if (b == NULL)
		return;
	uint32_t h[4] = {SCC_VERSION, (uint32_t)scc_rec_len, (uint32_t)plen, (uint32_t)slen};
	memcpy(b, SCC_MAGIC, 8);
	memcpy(b + 8, h, sizeof h);
	memcpy(b + SCC_HDR, scc_rec, scc_rec_len);
	memcpy(b + SCC_HDR + scc_rec_len, prog, plen);
	if (slen)
		memcpy(b + SCC_HDR + scc_rec_len + plen, snap, slen);
	uint64_t sum = scc_fnv(b, n - SCC_SUM);
	memcpy(b + n - SCC_SUM, &sum, SCC_SUM);
	unlinkat(scc_dirfd, SCC_TMP, 0); // a leftover of a crashed init
	int fd = openat(scc_dirfd, SCC_TMP, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd >= 0) {
		size_t off = 0;
		while (off < n) {
			ssize_t w = write(fd, b + off, n - off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				break;
			off += w;
		}
		int ok = off == n;
		if (close(fd) != 0)
			ok = 0;
		if (ok && renameat(scc_dirfd, SCC_TMP, scc_dirfd, SCC_FILE) == 0)
			scc_writes++;
		else
			unlinkat(scc_dirfd, SCC_TMP, 0);
	}
	free(b);
}

static void scc_tap_after(const scmp_filter_ctx ctx, const unsigned char *served, size_t n)
{
	if (!scc_tap)
		return;
	scc_tap_set(&scc_tap_served, &scc_tap_served_len, served, n);
	size_t rl = 0;
	unsigned char *r = scc_real_to_mem(ctx, &rl);
	scc_tap_set(&scc_tap_real, &scc_tap_real_len, r, rl);
	free(r);
}

// scc_tap_rebuilt is scc_tap_after for a served deferred context, whose
// real context is still empty: the deferred calls go, checked, into a
// fresh context of the tap's own, which is exported.
static void scc_tap_rebuilt(const unsigned char *served, size_t n)
{
	if (!scc_tap)
		return;
	scc_tap_set(&scc_tap_served, &scc_tap_served_len, served, n);
	scc_tap_set(&scc_tap_real, &scc_tap_real_len, NULL, 0);
	uint32_t def;
	memcpy(&def, scc_cand + SCC_HDR + 4, 4);
	scmp_filter_ctx t = __real_seccomp_init(def);
	if (t == NULL)
		return;
	if (scc_replay(t, scc_cand + SCC_HDR + SCC_INIT_LEN, scc_pos - SCC_INIT_LEN, 0) == 0) {
		size_t rl = 0;
		unsigned char *r = scc_real_to_mem(t, &rl);
		scc_tap_set(&scc_tap_real, &scc_tap_real_len, r, rl);
		free(r);
	}
	__real_seccomp_release(t);
}

// scc_write hands prog to the caller's fd as seccomp_export_bpf does: one
// write(2) of the whole program. Returns 0, or -1 if the write failed, in
// which case nothing was written.
static int scc_write(int fd, const unsigned char *prog, size_t n)
{
	return write(fd, prog, n) < 0 ? -1 : 0;
}

int __wrap_seccomp_export_bpf(const scmp_filter_ctx ctx, int fd)
{
	__atomic_fetch_add(&scc_calls, 1, __ATOMIC_RELAXED);
	if (!__atomic_load_n(&scc_active, __ATOMIC_ACQUIRE))
		return __real_seccomp_export_bpf(ctx, fd);
	pthread_mutex_lock(&scc_mu);
	int rc;
	// A served context exported again, or an export this code cannot key
	// (another context, an incomplete record): a real export, of real
	// calls (scc_materialize/scc_poison replay the deferred ones first).
	if (scc_state == SCC_SERVED)
		scc_materialize();
	else if ((scc_state == SCC_RECORDING || scc_state == SCC_DEFERRING) && (ctx != scc_ctx || scc_rec_fail))
		scc_poison();
	if (scc_state == SCC_DIVERGED && ctx == scc_ctx) {
		pthread_mutex_unlock(&scc_mu);
		return -ECANCELED;
	}
	if (scc_state != SCC_RECORDING && scc_state != SCC_DEFERRING) {
		rc = __real_seccomp_export_bpf(ctx, fd);
		pthread_mutex_unlock(&scc_mu);
		return rc;
	}
	// The key: the calls recorded, then what else decides the program.
	unsigned char t[SCC_TRAILER];
	scc_trailer(t);
	scc_put(t, sizeof t);
	if (!scc_rec_fail && scc_cand != NULL && scc_cand_key == scc_rec_len &&
	    memcmp(scc_cand + SCC_HDR, scc_rec, scc_rec_len) == 0) {
		const unsigned char *prog = scc_cand + SCC_HDR + scc_cand_key;
		if (scc_write(fd, prog, scc_cand_prog) == 0) {
			scc_hits++;
			if (scc_state == SCC_DEFERRING) {
				// Nothing of the key was made real: the context stays
				// deferred (SERVED) for the reads that follow.
				scc_tap_rebuilt(prog, scc_cand_prog);
				scc_state = SCC_SERVED;
				scc_close_dir();
				scc_free_rec();
			} else {
				scc_tap_after(ctx, prog, scc_cand_prog);
				scc_finish();
			}
			pthread_mutex_unlock(&scc_mu);
			return 0;
		}
		// The write failed and wrote nothing: the real export, on the
		// real calls, gives the caller libseccomp's own error (its errno
		// mapping depends on filter attributes).
		if (scc_materialize() != 0) {
			rc = -ECANCELED;
		} else {
			rc = __real_seccomp_export_bpf(ctx, fd);
			scc_tap_after(ctx, NULL, 0);
			scc_finish();
		}
		pthread_mutex_unlock(&scc_mu);
		return rc;
	}
	if (scc_materialize() != 0) {
		pthread_mutex_unlock(&scc_mu);
		return -ECANCELED;
	}
	scc_misses++;
	size_t n = 0, sn = 0;
	unsigned char *prog = NULL, *snap = NULL;
	if (scc_dirfd >= 0 && !scc_rec_fail)
		prog = scc_real_to_mem(ctx, &n);
	if (prog == NULL) {
		rc = __real_seccomp_export_bpf(ctx, fd);
		scc_tap_after(ctx, NULL, 0);
	} else {
		int served = scc_write(fd, prog, n) == 0;
		if (!served)
			rc = __real_seccomp_export_bpf(ctx, fd);
		else if ((rc = 0, snap = scc_snapshot(ctx, &sn)) != NULL)
			scc_store(prog, n, snap, sn);
		scc_tap_after(ctx, served ? prog : NULL, n);
		free(snap);
		free(prog);
	}
	scc_finish();
	pthread_mutex_unlock(&scc_mu);
	return rc;
}

// SCC_BEGIN/SCC_END bracket a wrapper: unarmed processes (every one but a
// container's init) only pay an atomic load; armed ones serialise the real
// call with its record so records are in the order of the real calls.
#define SCC_BEGIN(realcall)                                                  \
	__atomic_fetch_add(&scc_calls, 1, __ATOMIC_RELAXED);                     \
	if (!__atomic_load_n(&scc_active, __ATOMIC_ACQUIRE))                     \
		return realcall;                                                     \
	pthread_mutex_lock(&scc_mu);
#define SCC_END pthread_mutex_unlock(&scc_mu);

// scc_unserved is the start of every wrapper whose call this code never
// answers: deferred calls become real first, then the call is made for
// real, unless it involves a DIVERGED context (1: fail it). end says the
// call ends the session (poisons) as well.
static int scc_unserved(scmp_filter_ctx a, scmp_filter_ctx b, int end)
{
	if (end && scc_live())
		scc_poison();
	else
		scc_materialize();
	return scc_state == SCC_DIVERGED && (a == scc_ctx || b == scc_ctx || (a == NULL && b == NULL));
}

// The memory export is newer than the libseccomp linked here, and its exact
// output contract is not one this code can test, so it is never served from
// the cache: it passes through, and it ends a session (an export of the
// recorded context that this code did not see the output of).
int __wrap_seccomp_export_bpf_mem(const scmp_filter_ctx ctx, void *buf, size_t *len)
{
	__atomic_fetch_add(&scc_calls, 1, __ATOMIC_RELAXED);
	if (__real_seccomp_export_bpf_mem == NULL)
		return -EOPNOTSUPP;
	if (!__atomic_load_n(&scc_active, __ATOMIC_ACQUIRE))
		return __real_seccomp_export_bpf_mem(ctx, buf, len);
	pthread_mutex_lock(&scc_mu);
	int rc = scc_unserved(ctx, ctx, 1) ? -ECANCELED : __real_seccomp_export_bpf_mem(ctx, buf, len);
	pthread_mutex_unlock(&scc_mu);
	return rc;
}

scmp_filter_ctx __wrap_seccomp_init(uint32_t def_action)
{
	SCC_BEGIN(__real_seccomp_init(def_action))
	if (scc_live())
		scc_poison(); // a second live context
	scmp_filter_ctx ctx = __real_seccomp_init(def_action);
	if (scc_state == SCC_IDLE) {
		if (ctx == NULL) {
			scc_poison();
		} else {
			uint32_t r[3] = {SCC_INIT, def_action, 1}; // 1: a context, not NULL
			unsigned char t[SCC_TRAILER];
			scc_ctx = ctx;
			scc_put(r, sizeof r);
			scc_state = SCC_RECORDING;
			// Defer only calls of a key made by this very library (its
			// trailer, checked again at the export) that starts with
			// this call: the context handed out is the real one.
			if (scc_cand != NULL) {
				scc_trailer(t);
				if (memcmp(scc_cand + SCC_HDR, r, sizeof r) == 0 &&
				    memcmp(scc_cand + SCC_HDR + scc_cand_key - SCC_TRAILER, t, SCC_TRAILER) == 0) {
					scc_state = SCC_DEFERRING;
					scc_pos = SCC_INIT_LEN;
				}
			}
		}
	}
	SCC_END
	return ctx;
}

void __wrap_seccomp_release(scmp_filter_ctx ctx)
{
	__atomic_fetch_add(&scc_calls, 1, __ATOMIC_RELAXED);
	if (!__atomic_load_n(&scc_active, __ATOMIC_ACQUIRE)) {
		__real_seccomp_release(ctx);
		return;
	}
	pthread_mutex_lock(&scc_mu);
	if (scc_live() || scc_state == SCC_DIVERGED) {
		// Released before its export (nothing to cache; its deferred
		// calls need not be made: the real context goes too), after a
		// served export, or another context was live: either way the
		// session is over.
		if (ctx == scc_ctx)
			scc_finish();
		else
			scc_poison();
	}
	__real_seccomp_release(ctx);
	SCC_END
}

int __wrap_seccomp_merge(scmp_filter_ctx dst, scmp_filter_ctx src)
{
	SCC_BEGIN(__real_seccomp_merge(dst, src))
	int rc = scc_unserved(dst, src, 1) ? -ECANCELED : __real_seccomp_merge(dst, src);
	SCC_END
	return rc;
}

int __wrap_seccomp_reset(scmp_filter_ctx ctx, uint32_t def_action)
{
	SCC_BEGIN(__real_seccomp_reset(ctx, def_action))
	struct scc_call c;
	uint32_t res[1];
	scc_call_start(&c, SCC_RESET);
	scc_c32(&c, def_action);
	if (!scc_defer(ctx, &c, 1, res)) {
		res[0] = (uint32_t)__real_seccomp_reset(ctx, def_action);
		if (scc_track(ctx)) {
			if (!scc_result_ok(SCC_RESET, res))
				scc_poison();
			else
				scc_record(&c, res, 1);
		}
	}
	SCC_END
	return (int)res[0];
}

// Adding an architecture the filter already has, or removing one it does
// not, fails with -EEXIST and changes nothing; libseccomp-golang expects
// and ignores that (the native one is always there), so it is recorded
// like a success. Any other failure poisons the session. arch_exist's
// -EEXIST is its "absent".
static int scc_arch(scmp_filter_ctx ctx, uint32_t id, uint32_t arch)
{
	struct scc_call c;
	uint32_t res[1];
	scc_call_start(&c, id);
	scc_c32(&c, arch);
	if (scc_defer(ctx, &c, 1, res))
		return (int)res[0];
	if (id == SCC_ARCH_ADD)
		res[0] = (uint32_t)__real_seccomp_arch_add(ctx, arch);
	else if (id == SCC_ARCH_REMOVE)
		res[0] = (uint32_t)__real_seccomp_arch_remove(ctx, arch);
	else
		res[0] = (uint32_t)__real_seccomp_arch_exist(ctx, arch);
	if (scc_track(ctx)) {
		if (!scc_result_ok(id, res))
			scc_poison();
		else
			scc_record(&c, res, 1);
	}
	return (int)res[0];
}

int __wrap_seccomp_arch_add(scmp_filter_ctx ctx, uint32_t arch)
{
	SCC_BEGIN(__real_seccomp_arch_add(ctx, arch))
	int rc = scc_arch(ctx, SCC_ARCH_ADD, arch);
	SCC_END
	return rc;
}

int __wrap_seccomp_arch_remove(scmp_filter_ctx ctx, uint32_t arch)
{
	SCC_BEGIN(__real_seccomp_arch_remove(ctx, arch))
	int rc = scc_arch(ctx, SCC_ARCH_REMOVE, arch);
	SCC_END
	return rc;
}

int __wrap_seccomp_arch_exist(const scmp_filter_ctx ctx, uint32_t arch)
{
	SCC_BEGIN(__real_seccomp_arch_exist(ctx, arch))
	int rc = scc_arch(ctx, SCC_ARCH_EXIST, arch);
	SCC_END
	return rc;
}

int __wrap_seccomp_attr_set(scmp_filter_ctx ctx, enum scmp_filter_attr attr, uint32_t value)
{
	SCC_BEGIN(__real_seccomp_attr_set(ctx, attr, value))
	struct scc_call c;
	uint32_t res[1];
	scc_call_start(&c, SCC_ATTR_SET);
	scc_c32(&c, (uint32_t)attr);
	scc_c32(&c, value);
	if (!scc_defer(ctx, &c, 1, res)) {
		res[0] = (uint32_t)__real_seccomp_attr_set(ctx, attr, value);
		if (scc_track(ctx)) {
			if (!scc_result_ok(SCC_ATTR_SET, res))
				scc_poison();
			else
				scc_record(&c, res, 1);
		}
	}
	SCC_END
	return (int)res[0];
}

// attr_get's record holds the value it stored through its out-parameter.
// Only successes are recorded or answered (on a failure libseccomp leaves
// *value alone, which a record could not promise), and a NULL pointer is
// libseccomp's to reject.
int __wrap_seccomp_attr_get(const scmp_filter_ctx ctx, enum scmp_filter_attr attr, uint32_t *value)
{
	SCC_BEGIN(__real_seccomp_attr_get(ctx, attr, value))
	struct scc_call c;
	uint32_t res[2];
	scc_call_start(&c, SCC_ATTR_GET);
	scc_c32(&c, (uint32_t)attr);
	c.ok = value != NULL;
	if (scc_defer(ctx, &c, 2, res)) {
		if (res[0] == 0)
			*value = res[1];
	} else {
		res[0] = (uint32_t)__real_seccomp_attr_get(ctx, attr, value);
		if (scc_track(ctx)) {
			res[1] = res[0] == 0 && value != NULL ? *value : 0;
			if (!c.ok || !scc_result_ok(SCC_ATTR_GET, res))
				scc_poison();
			else
				scc_record(&c, res, 2);
		}
	}
	SCC_END
	return (int)res[0];
}

// libseccomp takes at most 6 conditions; more, or a NULL array, is a
// failed call that is not read, and not recorded.
static int scc_rule(scmp_filter_ctx ctx, uint32_t id, uint32_t action, int syscall,
		    unsigned int n, const struct scmp_arg_cmp *a)
{
	struct scc_call c;
	uint32_t res[1];
	scc_call_start(&c, id);
	scc_c32(&c, action);
	scc_c32(&c, (uint32_t)syscall);
	scc_c32(&c, n);
	if (n > 6 || (n > 0 && a == NULL)) {
		c.ok = 0;
	} else {
		for (unsigned int i = 0; i < n; i++) {
			scc_c32(&c, a[i].arg);
			scc_c32(&c, (uint32_t)a[i].op);
			scc_c64(&c, a[i].datum_a);
			scc_c64(&c, a[i].datum_b);
		}
	}
	if (scc_defer(ctx, &c, 1, res))
		return (int)res[0];
	if (id == SCC_RULE_ADD)
		res[0] = (uint32_t)__real_seccomp_rule_add_array(ctx, action, syscall, n, a);
	else
		res[0] = (uint32_t)__real_seccomp_rule_add_exact_array(ctx, action, syscall, n, a);
	scc_real_rule_adds++;
	if (scc_track(ctx)) {
		if (!c.ok || !scc_result_ok(id, res))
			scc_poison();
		else
			scc_record(&c, res, 1);
	}
	return (int)res[0];
}

int __wrap_seccomp_rule_add_array(scmp_filter_ctx ctx, uint32_t action, int syscall,
				  unsigned int arg_cnt, const struct scmp_arg_cmp *arg_array)
{
	SCC_BEGIN(__real_seccomp_rule_add_array(ctx, action, syscall, arg_cnt, arg_array))
	int rc = scc_rule(ctx, SCC_RULE_ADD, action, syscall, arg_cnt, arg_array);
	SCC_END
	return rc;
}

int __wrap_seccomp_rule_add_exact_array(scmp_filter_ctx ctx, uint32_t action, int syscall,
					unsigned int arg_cnt, const struct scmp_arg_cmp *arg_array)
{
	SCC_BEGIN(__real_seccomp_rule_add_exact_array(ctx, action, syscall, arg_cnt, arg_array))
	int rc = scc_rule(ctx, SCC_RULE_ADD_EXACT, action, syscall, arg_cnt, arg_array);
	SCC_END
	return rc;
}

int __wrap_seccomp_syscall_priority(scmp_filter_ctx ctx, int syscall, uint8_t priority)
{
	SCC_BEGIN(__real_seccomp_syscall_priority(ctx, syscall, priority))
	struct scc_call c;
	uint32_t res[1];
	scc_call_start(&c, SCC_PRIORITY);
	scc_c32(&c, (uint32_t)syscall);
	scc_c32(&c, priority);
	if (!scc_defer(ctx, &c, 1, res)) {
		res[0] = (uint32_t)__real_seccomp_syscall_priority(ctx, syscall, priority);
		if (scc_track(ctx)) {
			if (!scc_result_ok(SCC_PRIORITY, res))
				scc_poison();
			else
				scc_record(&c, res, 1);
		}
	}
	SCC_END
	return (int)res[0];
}

// Reads this code does not answer (a loaded filter, a text dump, the
// notify fd): they need the real context, so deferred calls are made real
// first. They change no state a later export depends on, so a RECORDING
// session goes on.
int __wrap_seccomp_load(const scmp_filter_ctx ctx)
{
	SCC_BEGIN(__real_seccomp_load(ctx))
	int rc = scc_unserved(ctx, ctx, 0) ? -ECANCELED : __real_seccomp_load(ctx);
	SCC_END
	return rc;
}

int __wrap_seccomp_export_pfc(const scmp_filter_ctx ctx, int fd)
{
	SCC_BEGIN(__real_seccomp_export_pfc(ctx, fd))
	int rc = scc_unserved(ctx, ctx, 0) ? -ECANCELED : __real_seccomp_export_pfc(ctx, fd);
	SCC_END
	return rc;
}

int __wrap_seccomp_notify_fd(const scmp_filter_ctx ctx)
{
	__atomic_fetch_add(&scc_calls, 1, __ATOMIC_RELAXED);
	if (__real_seccomp_notify_fd == NULL)
		return -EOPNOTSUPP;
	if (!__atomic_load_n(&scc_active, __ATOMIC_ACQUIRE))
		return __real_seccomp_notify_fd(ctx);
	pthread_mutex_lock(&scc_mu);
	int rc = scc_unserved(ctx, ctx, 0) ? -ECANCELED : __real_seccomp_notify_fd(ctx);
	pthread_mutex_unlock(&scc_mu);
	return rc;
}

// Global state, precomputed programs and transactions (which can roll rules
// back) are nothing libcontainer uses: any of them ends the session, after
// the deferred calls are made real (before the call: they were made under
// the state it changes). api_set has no context: it fails while one is
// DIVERGED (a NULL ctx stands for "global").
#define SCC_POISONING(ret, name, params, args, ctx)                          \
	ret __wrap_##name params                                                 \
	{                                                                        \
		__atomic_fetch_add(&scc_calls, 1, __ATOMIC_RELAXED);                 \
		if (__real_##name == NULL)                                           \
			return -EOPNOTSUPP;                                              \
		if (!__atomic_load_n(&scc_active, __ATOMIC_ACQUIRE))                 \
			return __real_##name args;                                       \
		pthread_mutex_lock(&scc_mu);                                         \
		ret rc = scc_unserved(ctx, ctx, 1) ? -ECANCELED : __real_##name args; \
		pthread_mutex_unlock(&scc_mu);                                       \
		return rc;                                                           \
	}

SCC_POISONING(int, seccomp_api_set, (unsigned int level), (level), NULL)
SCC_POISONING(int, seccomp_precompute, (scmp_filter_ctx ctx), (ctx), ctx)
SCC_POISONING(int, seccomp_transaction_start, (const scmp_filter_ctx ctx), (ctx), ctx)
SCC_POISONING(int, seccomp_transaction_commit, (const scmp_filter_ctx ctx), (ctx), ctx)

void __wrap_seccomp_transaction_reject(const scmp_filter_ctx ctx)
{
	__atomic_fetch_add(&scc_calls, 1, __ATOMIC_RELAXED);
	if (__real_seccomp_transaction_reject == NULL)
		return;
	if (!__atomic_load_n(&scc_active, __ATOMIC_ACQUIRE)) {
		__real_seccomp_transaction_reject(ctx);
		return;
	}
	pthread_mutex_lock(&scc_mu);
	if (!scc_unserved(ctx, ctx, 1))
		__real_seccomp_transaction_reject(ctx);
	pthread_mutex_unlock(&scc_mu);
}

typedef struct {
	uint64_t calls, hits, misses, writes, poisons;
	uint64_t deferred, replays, replayed, divergences, snap_served, real_rule_adds;
	int armed, state;
} berth_scc_stats;

static void berth_scc_get_stats(berth_scc_stats *s)
{
	pthread_mutex_lock(&scc_mu);
	s->calls = __atomic_load_n(&scc_calls, __ATOMIC_RELAXED);
	s->hits = scc_hits;
	s->misses = scc_misses;
	s->writes = scc_writes;
	s->poisons = scc_poisons;
	s->deferred = scc_deferred;
	s->replays = scc_replays;
	s->replayed = scc_replayed;
	s->divergences = scc_divergences;
	s->snap_served = scc_snap_served;
	s->real_rule_adds = scc_real_rule_adds;
	s->armed = scc_active;
	s->state = scc_state;
	pthread_mutex_unlock(&scc_mu);
}

static void berth_scc_set_tap(int on) { scc_tap = on; }
static const void *berth_scc_tap_buf(int real) { return real ? scc_tap_real : scc_tap_served; }
static int berth_scc_tap_len(int real) { return (int)(real ? scc_tap_real_len : scc_tap_served_len); }
*/
import "C"

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Every libseccomp function libseccomp-golang calls is in exactly one of
// these lists (the guard test fails otherwise, and on a wrap missing from
// the LDFLAGS above):
//
// seccompCacheRecorded: wrapped; each call is part of the key with its
// arguments and result, so it can be deferred and answered from the key.
// The mutators, and the reads whose answer depends on the context's state
// (a deferred context's real state is empty, so they cannot pass through).
var seccompCacheRecorded = []string{
	"seccomp_init", "seccomp_reset", "seccomp_arch_add", "seccomp_arch_remove", "seccomp_attr_set",
	"seccomp_rule_add_array", "seccomp_rule_add_exact_array", "seccomp_syscall_priority",
	"seccomp_arch_exist", "seccomp_attr_get",
}

// seccompCacheUnserved: wrapped, never answered by this code: each one
// makes the deferred calls real first (they depend on, or change, the
// context or global state in ways a key does not capture), then is made
// for real; some end the session. The exports are here too: a served
// export is decided in its wrapper.
var seccompCacheUnserved = []string{
	"seccomp_release", "seccomp_merge", "seccomp_load", "seccomp_export_pfc", "seccomp_notify_fd",
	"seccomp_export_bpf", "seccomp_export_bpf_mem", "seccomp_api_set", "seccomp_precompute",
	"seccomp_transaction_start", "seccomp_transaction_commit", "seccomp_transaction_reject",
}

// seccompCachePassThrough: not wrapped. Their results depend on no filter
// context: the library (version, native arch, API level, which changes
// only through the wrapped seccomp_api_set), the syscall tables, or a
// loaded filter's notify fd and buffers.
var seccompCachePassThrough = []string{
	"seccomp_api_get", "seccomp_arch_native", "seccomp_version",
	"seccomp_syscall_resolve_name", "seccomp_syscall_resolve_name_arch", "seccomp_syscall_resolve_num_arch",
	"seccomp_notify_alloc", "seccomp_notify_free", "seccomp_notify_id_valid",
	"seccomp_notify_receive", "seccomp_notify_respond",
}

// seccompCacheArm arms the cache in a standard container init (see
// berth_scc_arm). Only a standard init: a setns init (exec) has already
// joined the container's mount namespace, so its cwd is the container's
// and must not be trusted.
func seccompCacheArm() {
	if os.Getenv("_LIBCONTAINER_INITTYPE") == "standard" {
		C.berth_scc_arm()
	}
}

const seccompCacheFile = "seccomp.cache"

// seccompCacheStart is what seccompCacheBefore saw of a container's cache
// file, for seccompCacheAfter to tell whether the init rewrote it.
type seccompCacheStart struct {
	shared   string
	had      bool
	dev, ino uint64
}

var seccompCachePending sync.Map // container dir → seccompCacheStart

// seccompCacheBefore copies the shared cache file of spec's seccomp
// profile, if any, into the container dir for its init to find. The
// profile's hash only picks the file; the init's key check is the guard.
func (r *Runtime) seccompCacheBefore(ctrDir string, spec *specs.Spec) {
	seccompCachePending.Delete(ctrDir)
	if spec == nil || spec.Linux == nil || spec.Linux.Seccomp == nil {
		return
	}
	b, err := json.Marshal(spec.Linux.Seccomp)
	if err != nil {
		return
	}
	sum := sha256.Sum256(b)
	st := seccompCacheStart{shared: filepath.Join(r.cfg.RunRoot, "seccomp", hex.EncodeToString(sum[:])+".cache")}
	local := filepath.Join(ctrDir, seccompCacheFile)
	if seccompCacheDirOK(filepath.Dir(st.shared)) {
		if data := readSeccompCache(st.shared); data != nil {
			writeSeccompCache(local, data)
		}
	}
	var s syscall.Stat_t
	if syscall.Lstat(local, &s) == nil {
		st.had, st.dev, st.ino = true, s.Dev, s.Ino
	}
	seccompCachePending.Store(ctrDir, st)
}

// seccompCacheAfter, after the container's init has started (and so has
// exported its filter), shares the cache file the init wrote on a miss.
func (r *Runtime) seccompCacheAfter(ctrDir string) {
	v, ok := seccompCachePending.LoadAndDelete(ctrDir)
	if !ok {
		return
	}
	st := v.(seccompCacheStart)
	local := filepath.Join(ctrDir, seccompCacheFile)
	var s syscall.Stat_t
	if syscall.Lstat(local, &s) != nil || (st.had && s.Dev == st.dev && s.Ino == st.ino) {
		return
	}
	data := readSeccompCache(local)
	if data == nil {
		return
	}
	dir := filepath.Dir(st.shared)
	if err := os.Mkdir(dir, 0o700); err != nil && !os.IsExist(err) {
		return
	}
	if seccompCacheDirOK(dir) {
		writeSeccompCache(st.shared, data)
	}
}

// seccompCacheDirOK says whether the shared dir is a dir (not a link) that
// only root can use, as seccompCacheAfter creates it.
func seccompCacheDirOK(dir string) bool {
	var s syscall.Stat_t
	return syscall.Lstat(dir, &s) == nil && s.Mode&syscall.S_IFMT == syscall.S_IFDIR && s.Uid == 0 && s.Mode&0o077 == 0
}

// readSeccompCache returns the contents of a cache file that is a regular
// file (not a link), root's, writable by nobody else, and well formed;
// else nil.
func readSeccompCache(path string) []byte {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil
	}
	defer f.Close()
	var s syscall.Stat_t
	if syscall.Fstat(int(f.Fd()), &s) != nil || s.Mode&syscall.S_IFMT != syscall.S_IFREG ||
		s.Uid != 0 || s.Mode&0o022 != 0 || s.Size <= 0 || s.Size > 1<<20 {
		return nil
	}
	b := make([]byte, s.Size)
	n, err := f.ReadAt(b, 0)
	if err != nil || n != len(b) || C.berth_scc_valid(unsafe.Pointer(&b[0]), C.size_t(len(b))) != 1 {
		return nil
	}
	return b
}

// writeSeccompCache writes a cache file atomically: temp file, rename.
func writeSeccompCache(path string, data []byte) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
}

// seccompCacheStats reports this process's cache counters (tests).
type seccompCacheStats struct {
	Calls, Hits, Misses, Writes, Poisons uint64
	// Deferred: calls answered from the key; Replays: times deferred calls
	// were made real, Replayed: how many; Divergences: replayed results
	// that differed; SnapServed: reads of a served context answered from
	// its snapshot; RealRuleAdds: rule adds libseccomp really made.
	Deferred, Replays, Replayed, Divergences, SnapServed, RealRuleAdds uint64
	Armed                                                              bool
	State                                                              int
}

func getSeccompCacheStats() seccompCacheStats {
	var s C.berth_scc_stats
	C.berth_scc_get_stats(&s)
	return seccompCacheStats{
		Calls: uint64(s.calls), Hits: uint64(s.hits), Misses: uint64(s.misses),
		Writes: uint64(s.writes), Poisons: uint64(s.poisons),
		Deferred: uint64(s.deferred), Replays: uint64(s.replays), Replayed: uint64(s.replayed),
		Divergences: uint64(s.divergences), SnapServed: uint64(s.snap_served), RealRuleAdds: uint64(s.real_rule_adds),
		Armed: s.armed != 0, State: int(s.state),
	}
}

// seccompCacheTap makes every cached-session export also keep the program
// served and a second real export of the same filter (tests).
func seccompCacheTap(on bool) {
	v := 0
	if on {
		v = 1
	}
	C.berth_scc_set_tap(C.int(v))
}

// seccompCacheTapped returns the program last served by the cache code
// (nil if the real export wrote to the caller directly) and the program a
// real export of the same filter produced right after.
func seccompCacheTapped() (served, real []byte) {
	get := func(real C.int) []byte {
		if C.berth_scc_tap_len(real) == 0 {
			return nil
		}
		return C.GoBytes(C.berth_scc_tap_buf(real), C.berth_scc_tap_len(real))
	}
	return get(0), get(1)
}

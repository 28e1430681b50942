//go:build linux && cgo && seccomp

package runtime

// A cache of the BPF program libseccomp generates for a container's
// seccomp profile. libcontainer's init builds the filter rule by rule and
// exports it with seccomp_export_bpf on every start, and the export (BPF
// generation for Docker's profile on three architectures) is most of the
// seccomp cost of a start. libcontainer has no hook for this, so the cache
// sits at the C link level: GNU ld's --wrap sends every libseccomp call of
// this binary that changes a filter context or libseccomp's global state
// to a __wrap_ function below, which calls the real one (always: real
// return values reach the caller, real rules are added) and records the
// call and its result. The export then serves a stored program only when
// the recorded sequence, together with libseccomp's version, API level and
// native architecture, equals the stored key byte for byte: the same calls
// into the same library give the same program, so what the caller gets is
// what libseccomp would have produced.
//
// The cache file lives in the container's directory next to config.json
// (written by the runtime, never visible to the container); the init
// reads it before libcontainer pivots into the rootfs, and on a miss
// writes the new (key, program) back through a dir fd it opened then. The
// monitor shares files between containers through RUN_ROOT/seccomp.

/*
#cgo pkg-config: libseccomp
#cgo LDFLAGS: -Wl,--wrap=seccomp_init -Wl,--wrap=seccomp_reset -Wl,--wrap=seccomp_release -Wl,--wrap=seccomp_merge
#cgo LDFLAGS: -Wl,--wrap=seccomp_arch_add -Wl,--wrap=seccomp_arch_remove -Wl,--wrap=seccomp_attr_set
#cgo LDFLAGS: -Wl,--wrap=seccomp_rule_add_array -Wl,--wrap=seccomp_rule_add_exact_array -Wl,--wrap=seccomp_syscall_priority
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
// weakly (added after 2.5, absent from the 2.5.4 we link) are weak here as
// well: their wrapper must then behave as libseccomp-golang's compat_*
// check would have without the wrap (which now sees the wrapper, never
// NULL), i.e. return -EOPNOTSUPP.
extern scmp_filter_ctx __real_seccomp_init(uint32_t def_action);
extern int __real_seccomp_reset(scmp_filter_ctx ctx, uint32_t def_action);
extern void __real_seccomp_release(scmp_filter_ctx ctx);
extern int __real_seccomp_merge(scmp_filter_ctx dst, scmp_filter_ctx src);
extern int __real_seccomp_arch_add(scmp_filter_ctx ctx, uint32_t arch);
extern int __real_seccomp_arch_remove(scmp_filter_ctx ctx, uint32_t arch);
extern int __real_seccomp_attr_set(scmp_filter_ctx ctx, enum scmp_filter_attr attr, uint32_t value);
extern int __real_seccomp_rule_add_array(scmp_filter_ctx ctx, uint32_t action, int syscall, unsigned int arg_cnt, const struct scmp_arg_cmp *arg_array);
extern int __real_seccomp_rule_add_exact_array(scmp_filter_ctx ctx, uint32_t action, int syscall, unsigned int arg_cnt, const struct scmp_arg_cmp *arg_array);
extern int __real_seccomp_syscall_priority(scmp_filter_ctx ctx, int syscall, uint8_t priority);
extern int __real_seccomp_api_set(unsigned int level) __attribute__((weak));
extern int __real_seccomp_precompute(scmp_filter_ctx ctx) __attribute__((weak));
extern int __real_seccomp_transaction_start(const scmp_filter_ctx ctx) __attribute__((weak));
extern int __real_seccomp_transaction_commit(const scmp_filter_ctx ctx) __attribute__((weak));
extern void __real_seccomp_transaction_reject(const scmp_filter_ctx ctx) __attribute__((weak));
extern int __real_seccomp_export_bpf(const scmp_filter_ctx ctx, int fd);
extern int __real_seccomp_export_bpf_mem(const scmp_filter_ctx ctx, void *buf, size_t *len) __attribute__((weak));

// Record ids: the first field of every record in a key.
enum {
	SCC_INIT = 1, SCC_RESET, SCC_ARCH_ADD, SCC_ARCH_REMOVE, SCC_ATTR_SET,
	SCC_RULE_ADD, SCC_RULE_ADD_EXACT, SCC_PRIORITY, SCC_KEY_END,
};

// Session states. Arming starts IDLE; the first seccomp_init starts
// RECORDING its context; the export of that context, its release, or
// anything unexpected ends in DONE, after which every call passes through.
enum { SCC_IDLE, SCC_RECORDING, SCC_DONE };

#define SCC_MAGIC "BRTHSCC1"
#define SCC_VERSION 1u
#define SCC_HDR 24       // magic[8] version key_len prog_len reserved
#define SCC_SUM 8        // FNV-1a 64 of all preceding bytes
#define SCC_MAX_FILE (1u << 20)
#define SCC_FILE "seccomp.cache"
#define SCC_TMP "seccomp.cache.tmp"

static pthread_mutex_t scc_mu = PTHREAD_MUTEX_INITIALIZER;
static int scc_active;   // armed in this process; read unlocked as a fast path
static int scc_state = SCC_DONE;
static scmp_filter_ctx scc_ctx;
static unsigned char *scc_rec;
static size_t scc_rec_len, scc_rec_cap;
static int scc_rec_fail;
static unsigned char *scc_cand;  // the validated file, or NULL
static size_t scc_cand_key, scc_cand_prog;
static int scc_dirfd = -1;

// Counters, for tests and for checking that the wrap is in effect.
static uint64_t scc_calls, scc_hits, scc_misses, scc_writes, scc_poisons;

// Test tap: the program served to the caller's fd by this code, and a
// second, independent real export of the same context taken afterwards.
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

static void scc_put(const void *p, size_t n)
{
	if (scc_rec_fail)
		return;
	if (scc_rec_len + n > scc_rec_cap) {
		size_t c = scc_rec_cap ? scc_rec_cap : 4096;
		while (c < scc_rec_len + n)
			c *= 2;
		unsigned char *r = realloc(scc_rec, c);
		if (r == NULL) {
			scc_rec_fail = 1;
			return;
		}
		scc_rec = r;
		scc_rec_cap = c;
	}
	memcpy(scc_rec + scc_rec_len, p, n);
	scc_rec_len += n;
}

static void scc_u32(uint32_t v) { scc_put(&v, sizeof v); }
static void scc_u64(uint64_t v) { scc_put(&v, sizeof v); }

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
	if (scc_dirfd >= 0) {
		close(scc_dirfd);
		scc_dirfd = -1;
	}
	free(scc_cand);
	scc_cand = NULL;
	free(scc_rec);
	scc_rec = NULL;
	scc_rec_len = scc_rec_cap = 0;
}

static void scc_poison(void)
{
	scc_poisons++;
	scc_finish();
}

// scc_track says whether a call on ctx is to be recorded, poisoning the
// session for a call on a context other than the recorded one.
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

// scc_check validates a cache file image and, if good, returns 1 and the
// key and program lengths.
static int scc_check(const unsigned char *b, size_t n, size_t *key, size_t *prog)
{
	uint32_t ver, kl, pl, res;
	uint64_t sum;
	if (n < SCC_HDR + SCC_SUM || n > SCC_MAX_FILE || memcmp(b, SCC_MAGIC, 8) != 0)
		return 0;
	memcpy(&ver, b + 8, 4);
	memcpy(&kl, b + 12, 4);
	memcpy(&pl, b + 16, 4);
	memcpy(&res, b + 20, 4);
	if (ver != SCC_VERSION || res != 0 || kl == 0 || pl == 0 || pl % 8 != 0)
		return 0;
	if ((uint64_t)SCC_HDR + kl + pl + SCC_SUM != n)
		return 0;
	memcpy(&sum, b + n - SCC_SUM, SCC_SUM);
	if (sum != scc_fnv(b, n - SCC_SUM))
		return 0;
	*key = kl;
	*prog = pl;
	return 1;
}

int berth_scc_valid(const void *b, size_t n)
{
	size_t k, p;
	return scc_check(b, n, &k, &p);
}

// scc_load reads and validates dirfd's cache file; NULL if it is absent
// or unfit in any way (a miss, never an error). Only a regular file owned
// by root and writable by nobody else is read: the container dir is the
// runtime's, and this keeps it so even if its mode were loosened.
static unsigned char *scc_load(int dirfd, size_t *key, size_t *prog)
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
	if (got != (size_t)st.st_size || !scc_check(b, got, key, prog)) {
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
	size_t k = 0, p = 0;
	unsigned char *c = scc_load(dfd, &k, &p);
	pthread_mutex_lock(&scc_mu);
	scc_finish();
	scc_dirfd = dfd;
	scc_cand = c;
	scc_cand_key = k;
	scc_cand_prog = p;
	scc_rec_fail = 0;
	scc_state = SCC_IDLE;
	__atomic_store_n(&scc_active, 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&scc_mu);
	return 1;
}

// scc_store writes (key, program) to the container dir atomically: a temp
// file, then rename. No fsync: a torn file fails its checksum and is a miss.
static void scc_store(const unsigned char *prog, size_t plen)
{
	if (scc_dirfd < 0 || scc_rec_fail)
		return;
	size_t n = SCC_HDR + scc_rec_len + plen + SCC_SUM;
	if (n > SCC_MAX_FILE)
		return;
	unsigned char *b = malloc(n);
	if (b == NULL)
		return;
	uint32_t h[4] = {SCC_VERSION, (uint32_t)scc_rec_len, (uint32_t)plen, 0};
	memcpy(b, SCC_MAGIC, 8);
	memcpy(b + 8, h, sizeof h);
	memcpy(b + SCC_HDR, scc_rec, scc_rec_len);
	memcpy(b + SCC_HDR + scc_rec_len, prog, plen);
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

// scc_serve hands prog to the caller's fd as seccomp_export_bpf does: one
// write(2) of the whole program, 0 unless write fails. If it fails nothing
// was written, and the real export is run instead so that the caller gets
// libseccomp's own error (its errno mapping depends on filter attributes).
static int scc_serve(const scmp_filter_ctx ctx, int fd, const unsigned char *prog, size_t n, int *served)
{
	*served = 0;
	if (write(fd, prog, n) < 0)
		return __real_seccomp_export_bpf(ctx, fd);
	*served = 1;
	return 0;
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

int __wrap_seccomp_export_bpf(const scmp_filter_ctx ctx, int fd)
{
	__atomic_fetch_add(&scc_calls, 1, __ATOMIC_RELAXED);
	if (!__atomic_load_n(&scc_active, __ATOMIC_ACQUIRE))
		return __real_seccomp_export_bpf(ctx, fd);
	pthread_mutex_lock(&scc_mu);
	int rc, served;
	if (!scc_track(ctx) || scc_rec_fail) {
		if (scc_state == SCC_RECORDING)
			scc_poison();
		rc = __real_seccomp_export_bpf(ctx, fd);
		pthread_mutex_unlock(&scc_mu);
		return rc;
	}
	// The key: the calls recorded, then what else decides the program.
	const struct scmp_version *v = seccomp_version();
	scc_u32(SCC_KEY_END);
	scc_u32(v ? v->major : 0);
	scc_u32(v ? v->minor : 0);
	scc_u32(v ? v->micro : 0);
	scc_u32(seccomp_api_get());
	scc_u32(seccomp_arch_native());
	if (!scc_rec_fail && scc_cand != NULL && scc_cand_key == scc_rec_len &&
	    memcmp(scc_cand + SCC_HDR, scc_rec, scc_rec_len) == 0) {
		const unsigned char *prog = scc_cand + SCC_HDR + scc_cand_key;
		rc = scc_serve(ctx, fd, prog, scc_cand_prog, &served);
		if (served) {
			scc_hits++;
			scc_tap_after(ctx, prog, scc_cand_prog);
		} else {
			scc_tap_after(ctx, NULL, 0);
		}
		scc_finish();
		pthread_mutex_unlock(&scc_mu);
		return rc;
	}
	scc_misses++;
	size_t n = 0;
	unsigned char *prog = NULL;
	if (scc_dirfd >= 0 && !scc_rec_fail)
		prog = scc_real_to_mem(ctx, &n);
	if (prog == NULL) {
		rc = __real_seccomp_export_bpf(ctx, fd);
		scc_tap_after(ctx, NULL, 0);
	} else {
		rc = scc_serve(ctx, fd, prog, n, &served);
		if (served)
			scc_store(prog, n);
		scc_tap_after(ctx, served ? prog : NULL, n);
		free(prog);
	}
	scc_finish();
	pthread_mutex_unlock(&scc_mu);
	return rc;
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
	if (scc_state == SCC_RECORDING)
		scc_poison();
	int rc = __real_seccomp_export_bpf_mem(ctx, buf, len);
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

scmp_filter_ctx __wrap_seccomp_init(uint32_t def_action)
{
	SCC_BEGIN(__real_seccomp_init(def_action))
	scmp_filter_ctx ctx = __real_seccomp_init(def_action);
	if (scc_state == SCC_IDLE) {
		if (ctx == NULL) {
			scc_poison();
		} else {
			scc_state = SCC_RECORDING;
			scc_ctx = ctx;
			scc_u32(SCC_INIT);
			scc_u32(def_action);
			scc_u32(1); // a context, not NULL
		}
	} else if (scc_state == SCC_RECORDING) {
		scc_poison(); // a second live context
	}
	SCC_END
	return ctx;
}

int __wrap_seccomp_reset(scmp_filter_ctx ctx, uint32_t def_action)
{
	SCC_BEGIN(__real_seccomp_reset(ctx, def_action))
	int rc = __real_seccomp_reset(ctx, def_action);
	if (scc_track(ctx)) {
		if (rc != 0) {
			scc_poison();
		} else {
			scc_u32(SCC_RESET);
			scc_u32(def_action);
			scc_u32((uint32_t)rc);
		}
	}
	SCC_END
	return rc;
}

void __wrap_seccomp_release(scmp_filter_ctx ctx)
{
	__atomic_fetch_add(&scc_calls, 1, __ATOMIC_RELAXED);
	if (!__atomic_load_n(&scc_active, __ATOMIC_ACQUIRE)) {
		__real_seccomp_release(ctx);
		return;
	}
	pthread_mutex_lock(&scc_mu);
	if (scc_state == SCC_RECORDING) {
		// Released before its export (nothing to cache), or another
		// context was live: either way the session is over.
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
	if (scc_state == SCC_RECORDING)
		scc_poison();
	int rc = __real_seccomp_merge(dst, src);
	SCC_END
	return rc;
}

// Adding an architecture the filter already has, or removing one it does
// not, fails with -EEXIST and changes nothing; libseccomp-golang expects
// and ignores that (the native one is always there), so it is recorded
// like a success. Any other failure poisons the session.
static void scc_arch(scmp_filter_ctx ctx, uint32_t id, uint32_t arch, int rc)
{
	if (!scc_track(ctx))
		return;
	if (rc != 0 && rc != -EEXIST) {
		scc_poison();
		return;
	}
	scc_u32(id);
	scc_u32(arch);
	scc_u32((uint32_t)rc);
}

int __wrap_seccomp_arch_add(scmp_filter_ctx ctx, uint32_t arch)
{
	SCC_BEGIN(__real_seccomp_arch_add(ctx, arch))
	int rc = __real_seccomp_arch_add(ctx, arch);
	scc_arch(ctx, SCC_ARCH_ADD, arch, rc);
	SCC_END
	return rc;
}

int __wrap_seccomp_arch_remove(scmp_filter_ctx ctx, uint32_t arch)
{
	SCC_BEGIN(__real_seccomp_arch_remove(ctx, arch))
	int rc = __real_seccomp_arch_remove(ctx, arch);
	scc_arch(ctx, SCC_ARCH_REMOVE, arch, rc);
	SCC_END
	return rc;
}

int __wrap_seccomp_attr_set(scmp_filter_ctx ctx, enum scmp_filter_attr attr, uint32_t value)
{
	SCC_BEGIN(__real_seccomp_attr_set(ctx, attr, value))
	int rc = __real_seccomp_attr_set(ctx, attr, value);
	if (scc_track(ctx)) {
		if (rc != 0) {
			scc_poison();
		} else {
			scc_u32(SCC_ATTR_SET);
			scc_u32((uint32_t)attr);
			scc_u32(value);
			scc_u32((uint32_t)rc);
		}
	}
	SCC_END
	return rc;
}

static void scc_rule(scmp_filter_ctx ctx, uint32_t id, uint32_t action, int syscall,
		     unsigned int n, const struct scmp_arg_cmp *a, int rc)
{
	if (!scc_track(ctx))
		return;
	// libseccomp takes at most 6 conditions; more, or a NULL array, is a
	// failed call that is not read.
	if (rc != 0 || n > 6 || (n > 0 && a == NULL)) {
		scc_poison();
		return;
	}
	scc_u32(id);
	scc_u32(action);
	scc_u32((uint32_t)syscall);
	scc_u32(n);
	for (unsigned int i = 0; i < n; i++) {
		scc_u32(a[i].arg);
		scc_u32((uint32_t)a[i].op);
		scc_u64(a[i].datum_a);
		scc_u64(a[i].datum_b);
	}
	scc_u32((uint32_t)rc);
}

int __wrap_seccomp_rule_add_array(scmp_filter_ctx ctx, uint32_t action, int syscall,
				  unsigned int arg_cnt, const struct scmp_arg_cmp *arg_array)
{
	SCC_BEGIN(__real_seccomp_rule_add_array(ctx, action, syscall, arg_cnt, arg_array))
	int rc = __real_seccomp_rule_add_array(ctx, action, syscall, arg_cnt, arg_array);
	scc_rule(ctx, SCC_RULE_ADD, action, syscall, arg_cnt, arg_array, rc);
	SCC_END
	return rc;
}

int __wrap_seccomp_rule_add_exact_array(scmp_filter_ctx ctx, uint32_t action, int syscall,
					unsigned int arg_cnt, const struct scmp_arg_cmp *arg_array)
{
	SCC_BEGIN(__real_seccomp_rule_add_exact_array(ctx, action, syscall, arg_cnt, arg_array))
	int rc = __real_seccomp_rule_add_exact_array(ctx, action, syscall, arg_cnt, arg_array);
	scc_rule(ctx, SCC_RULE_ADD_EXACT, action, syscall, arg_cnt, arg_array, rc);
	SCC_END
	return rc;
}

int __wrap_seccomp_syscall_priority(scmp_filter_ctx ctx, int syscall, uint8_t priority)
{
	SCC_BEGIN(__real_seccomp_syscall_priority(ctx, syscall, priority))
	int rc = __real_seccomp_syscall_priority(ctx, syscall, priority);
	if (scc_track(ctx)) {
		if (rc != 0) {
			scc_poison();
		} else {
			scc_u32(SCC_PRIORITY);
			scc_u32((uint32_t)syscall);
			scc_u32(priority);
			scc_u32((uint32_t)rc);
		}
	}
	SCC_END
	return rc;
}

// Global state, precomputed programs and transactions (which can roll rules
// back) are nothing libcontainer uses: any of them ends the session.
#define SCC_POISONING(ret, name, params, args)                               \
	ret __wrap_##name params                                                 \
	{                                                                        \
		__atomic_fetch_add(&scc_calls, 1, __ATOMIC_RELAXED);                 \
		if (__real_##name == NULL)                                           \
			return -EOPNOTSUPP;                                              \
		if (!__atomic_load_n(&scc_active, __ATOMIC_ACQUIRE))                 \
			return __real_##name args;                                       \
		pthread_mutex_lock(&scc_mu);                                         \
		if (scc_state != SCC_DONE)                                           \
			scc_poison();                                                    \
		ret rc = __real_##name args;                                         \
		pthread_mutex_unlock(&scc_mu);                                       \
		return rc;                                                           \
	}

SCC_POISONING(int, seccomp_api_set, (unsigned int level), (level))
SCC_POISONING(int, seccomp_precompute, (scmp_filter_ctx ctx), (ctx))
SCC_POISONING(int, seccomp_transaction_start, (const scmp_filter_ctx ctx), (ctx))
SCC_POISONING(int, seccomp_transaction_commit, (const scmp_filter_ctx ctx), (ctx))

void __wrap_seccomp_transaction_reject(const scmp_filter_ctx ctx)
{
	__atomic_fetch_add(&scc_calls, 1, __ATOMIC_RELAXED);
	if (__real_seccomp_transaction_reject == NULL)
		return;
	pthread_mutex_lock(&scc_mu);
	if (scc_state != SCC_DONE)
		scc_poison();
	__real_seccomp_transaction_reject(ctx);
	pthread_mutex_unlock(&scc_mu);
}

typedef struct {
	uint64_t calls, hits, misses, writes, poisons;
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

// seccompCacheReadOnly lists the libseccomp functions libseccomp-golang
// calls that are deliberately not wrapped: they neither change a filter
// context nor libseccomp's global state in a way that changes a later
// export (seccomp_load loads into the kernel, the notify ones work on a
// loaded filter's fd). The guard test fails on any libseccomp-golang call
// that is neither wrapped nor listed here.
var seccompCacheReadOnly = []string{
	"seccomp_api_get", "seccomp_arch_exist", "seccomp_arch_native", "seccomp_attr_get",
	"seccomp_export_pfc", "seccomp_load", "seccomp_version",
	"seccomp_syscall_resolve_name", "seccomp_syscall_resolve_name_arch", "seccomp_syscall_resolve_num_arch",
	"seccomp_notify_alloc", "seccomp_notify_fd", "seccomp_notify_free", "seccomp_notify_id_valid",
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
	Armed                                bool
	State                                int
}

func getSeccompCacheStats() seccompCacheStats {
	var s C.berth_scc_stats
	C.berth_scc_get_stats(&s)
	return seccompCacheStats{
		Calls: uint64(s.calls), Hits: uint64(s.hits), Misses: uint64(s.misses),
		Writes: uint64(s.writes), Poisons: uint64(s.poisons), Armed: s.armed != 0, State: int(s.state),
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

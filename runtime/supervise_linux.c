// The steady state of a task monitor whose containers have neither a TTY
// nor stdin: a C supervisor that writes their output to the json-file logs
// and reaps them, with no Go runtime in the process. See supervise_linux.go
// for how the Go monitor gets here and back.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "supervise_linux.h"

// As logs.go: docker splits lines longer than this.
#define SUP_MAX_LINE (16 << 10)
// The Go monitor copied a container's output to its streamWriter through
// io.Copy's 32 KiB buffer; reading in the same chunks keeps where long
// lines are cut the same.
#define SUP_READ_CHUNK (32 << 10)
// A line handed to the writer is at most MAX_LINE-1 buffered bytes plus a
// chunk; escaped, each byte takes at most 6 (\u00XX or \ufffd).
#define SUP_LINE_CAP (SUP_MAX_LINE + SUP_READ_CHUNK)
#define SUP_JSON_CAP (6 * SUP_LINE_CAP + 128)

// How long output may still come after a container exited (a background
// process holding the pipe), as the Go monitor bounds a tty.
#define SUP_DRAIN_NS 1000000000LL

#define SUP_MAX_CTRS 64

// Static, so only the pages a task's output touches become resident.
static char sup_json[SUP_JSON_CAP];

static long long sup_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long long sup_mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int berth_sup_log_open(struct berth_sup_log *l, const char *path, long long max_size, int max_files)
{
	struct stat st;
	// openLogFile's defaults.
	l->max_size = max_size > 0 ? max_size : 10 << 20;
	l->max_files = max_files > 0 ? max_files : 3;
	l->path = path;
	l->size = 0;
	l->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (l->fd < 0)
		return -1;
	if (fstat(l->fd, &st) == 0)
		l->size = st.st_size;
	return 0;
}

void berth_sup_log_close(struct berth_sup_log *l)
{
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
}

// logFile.rotate: path.N-2 → path.N-1 … path → path.1, then a new path.
static int sup_rotate(struct berth_sup_log *l)
{
	char src[4096 + 16], dst[4096 + 16];
	int i;
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
	for (i = l->max_files - 1; i >= 1; i--) {
		if (i > 1)
			snprintf(src, sizeof src, "%s.%d", l->path, i - 1);
		else
			snprintf(src, sizeof src, "%s", l->path);
		snprintf(dst, sizeof dst, "%s.%d", l->path, i);
		if (rename(src, dst) < 0 && errno != ENOENT)
			return -1;
	}
	if (l->max_files == 1)
		unlink(l->path);
	l->fd = open(l->path, O_WRONLY | O_APPEND | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (l->fd < 0)
		return -1;
	l->size = 0;
	return 0;
}

static const char sup_hex[] = "0123456789abcdef";

// The length of the valid UTF-8 sequence at p (n bytes left), or 0 where
// Go's utf8.DecodeRune reports RuneError of size 1.
static int sup_utf8_len(const unsigned char *p, size_t n, unsigned *rune)
{
	unsigned char c = p[0], lo = 0x80, hi = 0xbf;
	int size;
	if (c < 0xc2 || c > 0xf4)
		return 0;
	if (c < 0xe0) {
		size = 2;
	} else if (c < 0xf0) {
		size = 3;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
	} else {
		size = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
	}
	if (n < (size_t)size || p[1] < lo || p[1] > hi)
		return 0;
	for (int i = 2; i < size; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	if (size == 2)
		*rune = (c & 0x1f) << 6 | (p[1] & 0x3f);
	else if (size == 3)
		*rune = (c & 0x0f) << 12 | (p[1] & 0x3f) << 6 | (p[2] & 0x3f);
	else
		*rune = (c & 0x07) << 18 | (p[1] & 0x3f) << 12 | (p[2] & 0x3f) << 6 | (p[3] & 0x3f);
	return size;
}

// sup_quote appends s as encoding/json's Marshal writes a string: HTML
// characters, U+2028/U+2029 and control characters escaped, each byte of
// invalid UTF-8 as \ufffd.
static char *sup_quote(char *o, const unsigned char *s, size_t n)
{
	*o++ = '"';
	for (size_t i = 0; i < n;) {
		unsigned char b = s[i];
		if (b < 0x80) {
			i++;
			switch (b) {
			case '\\':
			case '"':
				*o++ = '\\';
				*o++ = b;
				continue;
			case '\b':
				*o++ = '\\';
				*o++ = 'b';
				continue;
			case '\f':
				*o++ = '\\';
				*o++ = 'f';
				continue;
			case '\n':
				*o++ = '\\';
				*o++ = 'n';
				continue;
			case '\r':
				*o++ = '\\';
				*o++ = 'r';
				continue;
			case '\t':
				*o++ = '\\';
				*o++ = 't';
				continue;
			}
			if (b < 0x20 || b == '<' || b == '>' || b == '&') {
				memcpy(o, "\\u00", 4);
				o += 4;
				*o++ = sup_hex[b >> 4];
				*o++ = sup_hex[b & 0xf];
				continue;
			}
			*o++ = b;
			continue;
		}
		unsigned r = 0;
		int size = sup_utf8_len(s + i, n - i, &r);
		if (size == 0) {
			memcpy(o, "\\ufffd", 6);
			o += 6;
			i++;
			continue;
		}
		if (r == 0x2028 || r == 0x2029) {
			memcpy(o, "\\u202", 5);
			o += 5;
			*o++ = sup_hex[r & 0xf];
			i += size;
			continue;
		}
		memcpy(o, s + i, size);
		o += size;
		i += size;
	}
	*o++ = '"';
	return o;
}

// sup_time appends t as time.Time's MarshalJSON in UTC (RFC 3339 with
// nanoseconds, trailing zeros cut).
static char *sup_time(char *o, long long ns)
{
	time_t sec = ns / 1000000000LL;
	long frac = ns % 1000000000LL;
	struct tm tm;
	if (frac < 0) {
		frac += 1000000000L;
		sec--;
	}
	gmtime_r(&sec, &tm);
	o += sprintf(o, "\"%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
		     tm.tm_sec);
	if (frac) {
		char d[10];
		int k = 9;
		sprintf(d, "%09ld", frac);
		while (d[k - 1] == '0')
			k--;
		*o++ = '.';
		memcpy(o, d, k);
		o += k;
	}
	memcpy(o, "Z\"", 2);
	return o + 2;
}

// logFile.write: one entry, rotating first when it would pass max_size.
static int sup_write_entry(struct berth_sup_log *l, const char *stream, const unsigned char *line, size_t n, long long ns)
{
	char *o = sup_json;
	memcpy(o, "{\"log\":", 7);
	o = sup_quote(o + 7, line, n);
	o += sprintf(o, ",\"stream\":\"%s\",\"time\":", stream);
	o = sup_time(o, ns);
	memcpy(o, "}\n", 2);
	o += 2;
	size_t len = o - sup_json;
	if (l->size > 0 && l->size + (long long)len > l->max_size)
		if (sup_rotate(l) < 0)
			return -1;
	if (l->fd < 0)
		return -1;
	for (size_t off = 0; off < len;) {
		ssize_t w = write(l->fd, sup_json + off, len - off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		off += w;
		l->size += w;
	}
	return 0;
}

int berth_sup_stream_init(struct berth_sup_stream *s, struct berth_sup_log *l, const char *name)
{
	s->log = l;
	s->name = name;
	s->len = 0;
	s->fd = -1;
	s->eof = 1;
	s->buf = malloc(SUP_LINE_CAP);
	return s->buf ? 0 : -1;
}

// streamWriter.Write, after data[0:n] was appended to the buffer: cut it
// into lines, and lines that reach MAX_LINE without a newline.
static void sup_cut(struct berth_sup_stream *s, long long ns)
{
	size_t start = 0;
	for (;;) {
		unsigned char *p = s->buf + start;
		size_t left = s->len - start;
		unsigned char *nl = memchr(p, '\n', left);
		size_t cut;
		if (nl)
			cut = nl - p + 1;
		else if (left >= SUP_MAX_LINE)
			cut = SUP_MAX_LINE;
		else
			break;
		sup_write_entry(s->log, s->name, p, cut, ns);
		start += cut;
	}
	if (start > 0) {
		memmove(s->buf, s->buf + start, s->len - start);
		s->len -= start;
	}
}

void berth_sup_stream_write(struct berth_sup_stream *s, const void *data, size_t n, long long ns)
{
	// The caller's chunks are at most SUP_READ_CHUNK, and the buffer holds
	// less than SUP_MAX_LINE between writes.
	memcpy(s->buf + s->len, data, n);
	s->len += n;
	sup_cut(s, ns);
}

void berth_sup_stream_flush(struct berth_sup_stream *s, long long ns)
{
	if (s->len > 0)
		sup_write_entry(s->log, s->name, s->buf, s->len, ns);
	s->len = 0;
}

// One container as the Go monitor handed it over.
struct sup_ctr {
	int pid;
	const char *name;
	struct berth_sup_log log;
	struct berth_sup_stream out, err;
	int exited, done;
	int status;
	long long finished;  // CLOCK_REALTIME ns of the exit
	long long exit_mono; // CLOCK_MONOTONIC ns of the exit (or handover)
};

static struct sup_ctr sup_ctrs[SUP_MAX_CTRS];
static int sup_n;

static void sup_die(const char *msg)
{
	char b[512];
	int n = snprintf(b, sizeof b, "berth supervisor: %s: %s\n", msg, strerror(errno));
	if (n > 0)
		(void)!write(2, b, n < (int)sizeof b ? n : (int)sizeof b - 1);
	_exit(125);
}

static int sup_field(char **p, long long *v)
{
	char *end;
	*v = strtoll(*p, &end, 10);
	if (end == *p || *end != ' ')
		return -1;
	*p = end + 1;
	return 0;
}

// "PID OUT-FD ERR-FD MAX-SIZE MAX-FILES EXITED STATUS FINISHED NAME PATH"
// (an fd of -1: that pipe already ended; EXITED 1: the container exited,
// as seen by an earlier supervisor of the task); the path is last so it
// may hold spaces.
static int sup_parse(struct sup_ctr *c, char *v, int *outfd, int *errfd)
{
	long long f[8];
	char *p = v, *end;
	for (int i = 0; i < 8; i++)
		if (sup_field(&p, &f[i]) < 0)
			return -1;
	c->pid = f[0];
	*outfd = f[1];
	*errfd = f[2];
	c->exited = f[5];
	c->status = f[6];
	c->finished = f[7];
	c->exit_mono = sup_mono();
	end = strchr(p, ' ');
	if (!end)
		return -1;
	*end = 0;
	c->name = p;
	if (berth_sup_log_open(&c->log, end + 1, f[3], f[4]) < 0)
		c->log.fd = -1; // output is dropped, the exit still recorded
	return 0;
}

static int sup_unhex(int c)
{
	return c >= 'a' ? c - 'a' + 10 : c - '0';
}

// A stream's partial line, carried hex-encoded through the Go monitor.
static void sup_load_buf(struct berth_sup_stream *s, const char *hex, size_t n)
{
	for (size_t i = 0; i + 1 < n && s->len < SUP_MAX_LINE; i += 2)
		s->buf[s->len++] = sup_unhex(hex[i]) << 4 | sup_unhex(hex[i + 1]);
}

static void sup_close_stream(int ep, struct berth_sup_stream *s)
{
	if (s->fd >= 0) {
		epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
		close(s->fd);
	}
	s->fd = -1;
	s->eof = 1;
}

// A container is done once it exited and its output ended, or a second
// after its exit (background processes may hold the pipes, as the Go
// monitor bounds a tty): its last partial lines go out, its log is closed.
static void sup_maybe_done(int ep, struct sup_ctr *c, long long now, int *timeout)
{
	if (c->done || !c->exited)
		return;
	long long left = SUP_DRAIN_NS - (now - c->exit_mono);
	if (left > 0 && !(c->out.eof && c->err.eof)) {
		int ms = left / 1000000 + 1;
		if (*timeout < 0 || ms < *timeout)
			*timeout = ms;
		return;
	}
	sup_close_stream(ep, &c->out);
	sup_close_stream(ep, &c->err);
	long long ns = sup_now();
	berth_sup_stream_flush(&c->out, ns);
	berth_sup_stream_flush(&c->err, ns);
	berth_sup_log_close(&c->log);
	c->done = 1;
}

static void sup_reap(void)
{
	for (;;) {
		int st;
		pid_t pid = waitpid(-1, &st, WNOHANG);
		if (pid <= 0)
			return;
		for (int i = 0; i < sup_n; i++) {
			if (sup_ctrs[i].pid == pid && !sup_ctrs[i].exited) {
				sup_ctrs[i].exited = 1;
				sup_ctrs[i].status = st;
				sup_ctrs[i].finished = sup_now();
				sup_ctrs[i].exit_mono = sup_mono();
			}
		}
	}
}

static void sup_add(int ep, struct berth_sup_stream *s, int fd)
{
	struct epoll_event ev = {.events = EPOLLIN};
	s->fd = fd;
	s->eof = fd < 0;
	if (fd < 0)
		return;
	// No exec back into Go takes it along unless it is handed on.
	fcntl(fd, F_SETFD, FD_CLOEXEC);
	ev.data.ptr = s;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
		sup_die("epoll_ctl");
}

static char *sup_hexbuf(char *o, const struct berth_sup_stream *s)
{
	for (size_t i = 0; i < s->len; i++) {
		*o++ = sup_hex[s->buf[i] >> 4];
		*o++ = sup_hex[s->buf[i] & 0xf];
	}
	return o;
}

// sup_handover execs the binary back into the Go monitor, which records
// the exits of the containers that are done and, if others still run,
// execs the supervisor again for those (their pipes, exits seen and
// partial lines handed on in the environment). The exit pipe (fd 4), which
// the attached client waits on, is never close-on-exec.
static void sup_handover(char **argv, char **envp)
{
	int nenv = 0, j = 0, k = 0;
	size_t plen = strlen(BERTH_SUP_ENV);
	while (envp[nenv])
		nenv++;
	char **env = calloc(nenv + 2 * sup_n + 3, sizeof *env);
	size_t cap = 64;
	for (int i = 0; i < sup_n; i++)
		cap += strlen(sup_ctrs[i].name) + 48;
	char *res = malloc(cap);
	if (!env || !res)
		sup_die("malloc");
	for (int i = 0; i < nenv; i++)
		if (strncmp(envp[i], BERTH_SUP_ENV, plen) != 0)
			env[j++] = envp[i];
	int off = sprintf(res, "%s=", BERTH_SUP_DONE_ENV);
	for (int i = 0; i < sup_n; i++) {
		struct sup_ctr *c = &sup_ctrs[i];
		if (c->done) {
			off += sprintf(res + off, "%s%s %d %lld", off > (int)strlen(BERTH_SUP_DONE_ENV) + 1 ? "," : "", c->name,
				       c->status, c->finished);
			continue;
		}
		char *d = malloc(strlen(c->log.path) + strlen(c->name) + 160);
		char *b = malloc(4 * SUP_MAX_LINE + 64);
		if (!d || !b)
			sup_die("malloc");
		sprintf(d, "%s_%d=%d %d %d %lld %d %d %d %lld %s %s", BERTH_SUP_ENV, k, c->pid, c->out.fd, c->err.fd, c->log.max_size,
			c->log.max_files, c->exited, c->status, c->finished, c->name, c->log.path);
		char *o = b + sprintf(b, "%s_BUF_%d=", BERTH_SUP_ENV, k);
		o = sup_hexbuf(o, &c->out);
		*o++ = ',';
		o = sup_hexbuf(o, &c->err);
		*o = 0;
		env[j++] = d;
		env[j++] = b;
		if (c->out.fd >= 0)
			fcntl(c->out.fd, F_SETFD, 0);
		if (c->err.fd >= 0)
			fcntl(c->err.fd, F_SETFD, 0);
		k++;
	}
	env[j++] = res;
	if (k > 0) {
		char *next = malloc(64);
		if (!next)
			sup_die("malloc");
		sprintf(next, "%s=%d", BERTH_SUP_NEXT_ENV, k);
		env[j++] = next;
	}
	env[j] = NULL;
	execve("/proc/self/exe", argv, env);
	sup_die("exec back into the monitor");
}

static void supervise(char **argv, char **envp)
{
	static unsigned char chunk[SUP_READ_CHUNK];
	sigset_t chld;
	int ep, sfd;

	// As the Go monitor: a terminal going away must not end the task, and
	// a log write must not kill us.
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);

	sup_n = atoi(getenv(BERTH_SUP_ENV));
	if (sup_n <= 0 || sup_n > SUP_MAX_CTRS)
		sup_die("bad container count");
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		sup_die("epoll_create1");
	// Exits come as SIGCHLD on a signalfd; those before it existed are
	// found by the first sup_reap below (zombies wait for us).
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0)
		sup_die("signalfd");
	struct epoll_event sev = {.events = EPOLLIN, .data.ptr = NULL};
	if (epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &sev) < 0)
		sup_die("epoll_ctl");
	for (int i = 0; i < sup_n; i++) {
		char key[64];
		int outfd, errfd;
		struct sup_ctr *c = &sup_ctrs[i];
		snprintf(key, sizeof key, "%s_%d", BERTH_SUP_ENV, i);
		char *v = getenv(key);
		if (!v || sup_parse(c, v, &outfd, &errfd) < 0)
			sup_die("bad container description");
		if (berth_sup_stream_init(&c->out, &c->log, "stdout") < 0 || berth_sup_stream_init(&c->err, &c->log, "stderr") < 0)
			sup_die("malloc");
		snprintf(key, sizeof key, "%s_BUF_%d", BERTH_SUP_ENV, i);
		if ((v = getenv(key))) {
			char *comma = strchr(v, ',');
			if (comma) {
				sup_load_buf(&c->out, v, comma - v);
				sup_load_buf(&c->err, comma + 1, strlen(comma + 1));
			}
		}
		sup_add(ep, &c->out, outfd);
		sup_add(ep, &c->err, errfd);
	}
	sup_reap();

	for (;;) {
		int some_done = 0, timeout = -1;
		long long now = sup_mono();
		for (int i = 0; i < sup_n; i++) {
			sup_maybe_done(ep, &sup_ctrs[i], now, &timeout);
			some_done |= sup_ctrs[i].done;
		}
		// Each exit is recorded as it happens, as the Go monitor did.
		if (some_done)
			break;
		struct epoll_event evs[16];
		int n = epoll_wait(ep, evs, 16, timeout);
		if (n < 0 && errno != EINTR)
			sup_die("epoll_wait");
		for (int k = 0; k < n; k++) {
			struct berth_sup_stream *s = evs[k].data.ptr;
			if (!s) {
				struct signalfd_siginfo si;
				while (read(sfd, &si, sizeof si) == sizeof si)
					;
				sup_reap();
				continue;
			}
			if (s->fd < 0)
				continue;
			ssize_t r = read(s->fd, chunk, sizeof chunk);
			if (r > 0)
				berth_sup_stream_write(s, chunk, r, sup_now());
			else if (r == 0 || (errno != EINTR && errno != EAGAIN))
				sup_close_stream(ep, s);
		}
	}
	close(sfd);
	close(ep);
	sigprocmask(SIG_UNBLOCK, &chld, NULL);
	sup_handover(argv, envp);
}

// Runs before the Go runtime starts (glibc passes constructors argc, argv
// and envp), so a supervisor never has Go's heap, threads or GC.
__attribute__((constructor)) static void berth_supervise_ctor(int argc, char **argv, char **envp)
{
	(void)argc;
	if (getenv(BERTH_SUP_ENV))
		supervise(argv, envp);
}

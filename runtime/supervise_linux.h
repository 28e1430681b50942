// The C supervisor's log writer, shared by supervise_linux.c and the cgo
// wrapper in supervise_linux.go that tests compare it with logs.go through.

#ifndef BERTH_SUPERVISE_H
#define BERTH_SUPERVISE_H

#include <stddef.h>

// Selects supervisor mode (the container count); _BERTH_SUPERVISE_N
// describe the containers. Every variable with this prefix is dropped on
// the way back into Go.
#define BERTH_SUP_ENV "_BERTH_SUPERVISE"
// Carries the containers' ends back into the Go monitor.
#define BERTH_SUP_DONE_ENV "_BERTH_MONITOR_DONE"
// The number of containers still running when some are done: the Go
// monitor records those, then sets BERTH_SUP_ENV to it and execs the
// supervisor again (the _BERTH_SUPERVISE_N describe them).
#define BERTH_SUP_NEXT_ENV "_BERTH_MONITOR_NEXT"

// logFile of logs.go.
struct berth_sup_log {
	int fd;
	const char *path;
	long long max_size;
	int max_files;
	long long size;
};

// streamWriter of logs.go, with the pipe it reads.
struct berth_sup_stream {
	struct berth_sup_log *log;
	const char *name;
	unsigned char *buf;
	size_t len;
	int fd, eof;
};

int berth_sup_log_open(struct berth_sup_log *l, const char *path, long long max_size, int max_files);
void berth_sup_log_close(struct berth_sup_log *l);
int berth_sup_stream_init(struct berth_sup_stream *s, struct berth_sup_log *l, const char *name);
// n is at most 32 KiB, the chunk the supervisor reads.
void berth_sup_stream_write(struct berth_sup_stream *s, const void *data, size_t n, long long ns);
void berth_sup_stream_flush(struct berth_sup_stream *s, long long ns);

#endif

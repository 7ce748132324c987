/*
 * mft_testenv — header-only helpers for unit tests that need real servers:
 * a redis-server on a free loopback port and the embedded Kafka broker
 * ($MFT_BIN/mft-devbroker), each in its own temporary directory, plus a
 * helper that runs a program (kcat, redis-cli) and captures its stdout.
 *
 * Servers are child processes: started with fork/exec, stopped with SIGTERM
 * and waitpid, their temp directories removed. Everything is static inline so
 * a test includes only what it uses without unused-function warnings.
 * Not thread-safe; call from the test's main thread.
 */
#ifndef MFT_TESTENV_H
#define MFT_TESTENV_H

#include <hiredis/hiredis.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct mft_test_redis {
    pid_t pid;
    int port;
    char dir[128];
    char url[128];
};

struct mft_test_broker {
    pid_t pid;
    char dir[128];
    char file[192];
    char addr[128];
};

static inline long long mft_test_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void mft_test_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Returns a loopback TCP port that was free a moment ago, or -1. */
static inline int mft_test_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    int port = -1;
    if (fd < 0)
        return -1;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
        port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

static inline int mft_test__rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

/* Removes a directory tree; accepts "" (does nothing). */
static inline void mft_test_rmtree(const char *dir)
{
    if (dir && *dir)
        nftw(dir, mft_test__rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* SIGTERM, then waitpid up to timeout_ms, then SIGKILL. Returns the wait
 * status, or -1 when the child was not running. */
static inline int mft_test_stop_pid(pid_t pid, int timeout_ms)
{
    int status = -1;
    if (pid <= 0)
        return -1;
    kill(pid, SIGTERM);
    long long dl = mft_test_now_ms() + timeout_ms;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            return status;
        if (w < 0)
            return -1;
        if (mft_test_now_ms() > dl) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return status;
        }
        mft_test_sleep_ms(20);
    }
}

/* Starts redis-server on r->port (a free port is chosen when r->port is 0)
 * with no persistence, and waits until it answers PING. Returns 0 or -1. */
static inline int mft_test_redis_start(struct mft_test_redis *r)
{
    char port[16];
    if (r->port == 0) {
        memset(r, 0, sizeof(*r));
        if ((r->port = mft_test_free_port()) < 0)
            return -1;
    }
    if (!r->dir[0]) {
        snprintf(r->dir, sizeof(r->dir), "/tmp/mft-test-redis-XXXXXX");
        if (!mkdtemp(r->dir))
            return -1;
    }
    snprintf(port, sizeof(port), "%d", r->port);
    snprintf(r->url, sizeof(r->url), "redis://127.0.0.1:%d/0", r->port);
    char logf[192];
    snprintf(logf, sizeof(logf), "%s/redis.log", r->dir);
    r->pid = fork();
    if (r->pid < 0)
        return -1;
    if (r->pid == 0) {
        char *argv[] = {"redis-server", "--port",      port,   "--bind",
                        "127.0.0.1",    "--save",      "",     "--appendonly",
                        "no",           "--dir",       r->dir, "--logfile",
                        logf,           "--daemonize", "no",   NULL};
        execvp("redis-server", argv);
        _exit(127);
    }
    long long dl = mft_test_now_ms() + 10000;
    while (mft_test_now_ms() < dl) {
        struct timeval tv = {0, 200000};
        redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);
        if (c && !c->err) {
            redisReply *rep = redisCommand(c, "PING");
            int ok = rep && rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "PONG") == 0;
            if (rep)
                freeReplyObject(rep);
            redisFree(c);
            if (ok)
                return 0;
        } else if (c) {
            redisFree(c);
        }
        if (waitpid(r->pid, NULL, WNOHANG) == r->pid) {
            r->pid = 0;
            return -1;
        }
        mft_test_sleep_ms(20);
    }
    return -1;
}

/* Stops redis-server; keep_dir keeps the directory and port for a restart. */
static inline void mft_test_redis_stop(struct mft_test_redis *r, int keep_dir)
{
    mft_test_stop_pid(r->pid, 5000);
    r->pid = 0;
    if (!keep_dir) {
        mft_test_rmtree(r->dir);
        r->dir[0] = '\0';
    }
}

/* Starts $MFT_BIN/mft-devbroker with MFT_DEVBROKER_FILE in a temp directory
 * and reads the bootstrap address from that file. Returns 0 or -1. */
static inline int mft_test_broker_start(struct mft_test_broker *b)
{
    const char *bin = getenv("MFT_BIN");
    char exe[512];
    memset(b, 0, sizeof(*b));
    snprintf(exe, sizeof(exe), "%s/mft-devbroker", bin ? bin : ".");
    snprintf(b->dir, sizeof(b->dir), "/tmp/mft-test-broker-XXXXXX");
    if (!mkdtemp(b->dir))
        return -1;
    snprintf(b->file, sizeof(b->file), "%s/devbroker.addr", b->dir);
    b->pid = fork();
    if (b->pid < 0)
        return -1;
    if (b->pid == 0) {
        setenv("MFT_DEVBROKER_FILE", b->file, 1);
        setenv("MFT_LOG_LEVEL", "warn", 1);
        int dn = open("/dev/null", O_WRONLY);
        if (dn >= 0)
            dup2(dn, STDOUT_FILENO);
        char *argv[] = {exe, NULL};
        execv(exe, argv);
        _exit(127);
    }
    long long dl = mft_test_now_ms() + 10000;
    while (mft_test_now_ms() < dl) {
        FILE *f = fopen(b->file, "r");
        if (f) {
            char *ok = fgets(b->addr, sizeof(b->addr), f);
            fclose(f);
            if (ok) {
                b->addr[strcspn(b->addr, "\r\n")] = '\0';
                if (b->addr[0])
                    return 0;
            }
        }
        if (waitpid(b->pid, NULL, WNOHANG) == b->pid) {
            b->pid = 0;
            return -1;
        }
        mft_test_sleep_ms(20);
    }
    return -1;
}

/* Stops the broker (SIGTERM). Returns its wait status (0 = clean exit 0). */
static inline int mft_test_broker_stop(struct mft_test_broker *b)
{
    int st = mft_test_stop_pid(b->pid, 10000);
    b->pid = 0;
    mft_test_rmtree(b->dir);
    b->dir[0] = '\0';
    return st;
}

/* Runs argv[0] (PATH lookup) with stdin from /dev/null, captures stdout into a
 * malloc'd NUL-terminated *out (at most 16 MiB), kills it after timeout_ms.
 * Returns the wait status or -1. */
static inline int mft_test_run(char *const argv[], char **out, size_t *outlen, int timeout_ms)
{
    int p[2];
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    int status = -1;
    *out = NULL;
    if (outlen)
        *outlen = 0;
    if (!buf || pipe(p) != 0) {
        free(buf);
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        free(buf);
        return -1;
    }
    if (pid == 0) {
        int dn = open("/dev/null", O_RDONLY);
        if (dn >= 0)
            dup2(dn, STDIN_FILENO);
        dup2(p[1], STDOUT_FILENO);
        close(p[0]);
        close(p[1]);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    long long dl = mft_test_now_ms() + timeout_ms;
    for (;;) {
        long long left = dl - mft_test_now_ms();
        if (left <= 0) {
            kill(pid, SIGKILL);
            break;
        }
        struct pollfd pfd = {p[0], POLLIN, 0};
        int pr = poll(&pfd, 1, (int)left);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            continue;
        if (len + 4096 + 1 > cap && cap < (16u << 20)) {
            char *nb = realloc(buf, cap * 2);
            if (!nb)
                break;
            buf = nb;
            cap *= 2;
        }
        if (len + 4096 + 1 > cap)
            break;
        ssize_t n = read(p[0], buf + len, 4096);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(p[0]);
    waitpid(pid, &status, 0);
    buf[len] = '\0';
    *out = buf;
    if (outlen)
        *outlen = len;
    return status;
}

#endif

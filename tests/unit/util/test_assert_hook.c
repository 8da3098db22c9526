/* The embedder's assertion hook (stcache/assert.h): it receives the failed
 * assertion's file, line, expression and its arg; without a hook, and when a
 * hook returns, the process prints the assertion and aborts. */
#include "test.h"

#include "stcache/assert.h"
#include "stcache/buf.h"

#include <setjmp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

struct seen {
    int calls;
    char file[256];
    int line;
    char expr[256];
    jmp_buf back;
};

static void hook_longjmp(const char *file, int line, const char *expr, void *arg)
{
    struct seen *s = arg;
    s->calls++;
    snprintf(s->file, sizeof s->file, "%s", file);
    s->line = line;
    snprintf(s->expr, sizeof s->expr, "%s", expr);
    longjmp(s->back, 1);
}

/* A broken invariant reached through the public API: taking a reference on
 * a buffer whose count is zero. */
static void break_buf_invariant(struct raft_buf *b)
{
    b->refs = 0;
    raft_buf_ref(b);
}

TEST(assert_hook_receives_file_line_expr_and_arg)
{
    static struct seen s; /* static: survives the longjmp unchanged */
    memset(&s, 0, sizeof s);
    struct raft_buf *b = raft_buf_create(8);
    ASSERT_TRUE(b != NULL);
    st_set_assert_hook(hook_longjmp, &s);
    if (setjmp(s.back) == 0) {
        break_buf_invariant(b);
        st_set_assert_hook(NULL, NULL);
        ASSERT_TRUE(!"the assertion did not fire");
    }
    st_set_assert_hook(NULL, NULL);
    ASSERT_EQ(s.calls, 1);
    ASSERT_TRUE(strstr(s.file, "buf.c") != NULL);
    ASSERT_TRUE(s.line > 0);
    ASSERT_TRUE(strstr(s.expr, "refs > 0") != NULL);
    b->refs = 1;
    raft_buf_unref(b);
}

/* Runs fn in a child whose stderr is captured; returns the wait status. */
static int run_child(void (*fn)(int fd), char *err, size_t cap)
{
    int pipefd[2];
    if (pipe(pipefd) != 0) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(pipefd[0]);
        dup2(pipefd[1], 2);
        fn(pipefd[1]);
        _exit(0);
    }
    close(pipefd[1]);
    size_t n = 0;
    ssize_t k;
    while (n + 1 < cap && (k = read(pipefd[0], err + n, cap - 1 - n)) > 0)
        n += (size_t)k;
    err[n] = '\0';
    close(pipefd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
}

static void child_default(int fd)
{
    (void)fd;
    struct raft_buf *b = raft_buf_create(8);
    break_buf_invariant(b);
}

static void hook_returns(const char *file, int line, const char *expr, void *arg)
{
    fprintf(stderr, "hook called with arg %s\n", (const char *)arg);
}

static void child_hook_returns(int fd)
{
    (void)fd;
    static char tag[] = "tag-42";
    st_set_assert_hook(hook_returns, tag);
    struct raft_buf *b = raft_buf_create(8);
    break_buf_invariant(b);
}

TEST(default_without_hook_prints_and_aborts)
{
    char err[1024];
    int status = run_child(child_default, err, sizeof err);
    ASSERT_TRUE(WIFSIGNALED(status));
    ASSERT_EQ(WTERMSIG(status), SIGABRT);
    ASSERT_TRUE(strstr(err, "stcache: assertion failed:") != NULL);
    ASSERT_TRUE(strstr(err, "buf.c:") != NULL);
}

TEST(hook_that_returns_still_aborts)
{
    char err[1024];
    int status = run_child(child_hook_returns, err, sizeof err);
    ASSERT_TRUE(WIFSIGNALED(status));
    ASSERT_EQ(WTERMSIG(status), SIGABRT);
    ASSERT_TRUE(strstr(err, "hook called with arg tag-42") != NULL);
    ASSERT_TRUE(strstr(err, "stcache: assertion failed:") != NULL);
}

TEST_MAIN()

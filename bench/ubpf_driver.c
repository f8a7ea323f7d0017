/* Times one raw BPF program on uBPF's interpreter and on uBPF's JIT, for bench/ubpf.py.
 *
 *   ubpf_driver CODE MEMORY ROUNDS BUDGET_MS [OUT_PREFIX]
 *
 * CODE is the program's bytecode (8-byte instructions, as Program.bytecode gives it), MEMORY the
 * bytes its r1 points at (r2 = their length). Each engine runs the program on that one buffer, as
 * bpfjit's test_run(repeat=N) does: once to check it, once more to size a round to about
 * BUDGET_MS, one warm-up round, then ROUNDS timed rounds (CLOCK_MONOTONIC around the whole
 * round). The memory is reset to MEMORY before each engine. With OUT_PREFIX, the buffer as each
 * engine's first run left it goes to OUT_PREFIX.interp and OUT_PREFIX.jit (for programs that
 * write their memory).
 *
 * Output, one line: "INTERP_RETVAL INTERP_NS JIT_RETVAL JIT_NS", the ns being the median of the
 * rounds' mean time per run. JIT_NS is -1 (and JIT_RETVAL 0) when uBPF cannot JIT the program.
 * Errors go to stderr with exit status 1.
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ubpf.h>

typedef int (*run_fn)(void *engine, void *mem, size_t len, uint64_t *retval);

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "ubpf_driver: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    exit(1);
}

static void *read_file(const char *path, size_t *size)
{
    FILE *file = fopen(path, "rb");
    if (!file)
        die("cannot open", path);
    if (fseek(file, 0, SEEK_END) != 0)
        die("cannot seek", path);
    long length = ftell(file);
    rewind(file);
    /* One spare byte so that an empty memory file still gives a valid pointer. */
    void *bytes = malloc((size_t)length + 1);
    if (!bytes || fread(bytes, 1, (size_t)length, file) != (size_t)length)
        die("cannot read", path);
    fclose(file);
    *size = (size_t)length;
    return bytes;
}

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static int interpret(void *vm, void *mem, size_t len, uint64_t *retval)
{
    return ubpf_exec((struct ubpf_vm *)vm, mem, len, retval);
}

static int run_jitted(void *code, void *mem, size_t len, uint64_t *retval)
{
    ubpf_jit_fn function = *(ubpf_jit_fn *)code;
    *retval = function(mem, len);
    return 0;
}

/* Mean ns per run over `runs` runs, or exit when a run fails. */
static double round_ns(run_fn run, void *engine, void *mem, size_t len, uint64_t runs)
{
    uint64_t retval, start = now_ns();
    for (uint64_t i = 0; i < runs; i++)
        if (run(engine, mem, len, &retval) != 0)
            die("a run failed", NULL);
    return (double)(now_ns() - start) / (double)runs;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The engine's result on a fresh copy of the memory, then its median ns per run. */
static double measure(run_fn run, void *engine, void *mem, const void *initial, size_t len, int rounds,
                      double budget_ns, uint64_t *retval, const char *memory_out)
{
    memcpy(mem, initial, len);
    if (run(engine, mem, len, retval) != 0)
        die("the first run failed", NULL);
    if (memory_out) {
        FILE *file = fopen(memory_out, "wb");
        if (!file || fwrite(mem, 1, len, file) != len || fclose(file) != 0)
            die("cannot write", memory_out);
    }
    double once = round_ns(run, engine, mem, len, 1);
    uint64_t runs = once >= budget_ns ? 1 : (uint64_t)(budget_ns / (once > 1.0 ? once : 1.0));
    round_ns(run, engine, mem, len, runs); /* warm-up */
    double *samples = calloc((size_t)rounds, sizeof *samples);
    if (!samples)
        die("out of memory", NULL);
    for (int i = 0; i < rounds; i++)
        samples[i] = round_ns(run, engine, mem, len, runs);
    qsort(samples, (size_t)rounds, sizeof *samples, by_value);
    double median = rounds % 2 ? samples[rounds / 2] : (samples[rounds / 2 - 1] + samples[rounds / 2]) / 2;
    free(samples);
    return median;
}

int main(int argc, char **argv)
{
    if (argc != 5 && argc != 6)
        die("usage", "ubpf_driver CODE MEMORY ROUNDS BUDGET_MS [OUT_PREFIX]");
    size_t code_size, len;
    void *code = read_file(argv[1], &code_size);
    void *initial = read_file(argv[2], &len);
    int rounds = atoi(argv[3]);
    double budget_ns = atof(argv[4]) * 1e6;
    if (rounds < 1 || budget_ns <= 0)
        die("ROUNDS and BUDGET_MS must be positive", NULL);
    void *mem = malloc(len + 1);
    struct ubpf_vm *vm = ubpf_create();
    if (!mem || !vm)
        die("out of memory", NULL);
    char *error = NULL;
    if (ubpf_load(vm, code, (uint32_t)code_size, &error) != 0)
        die("uBPF refuses the program", error);

    char *interp_out = NULL, *jit_out = NULL;
    if (argc == 6) {
        size_t size = strlen(argv[5]) + sizeof ".interp";
        interp_out = malloc(size);
        jit_out = malloc(size);
        if (!interp_out || !jit_out)
            die("out of memory", NULL);
        snprintf(interp_out, size, "%s.interp", argv[5]);
        snprintf(jit_out, size, "%s.jit", argv[5]);
    }
    uint64_t interp_retval, jit_retval = 0;
    double interp_ns = measure(interpret, vm, mem, initial, len, rounds, budget_ns, &interp_retval, interp_out);
    double jit_ns = -1;
    ubpf_jit_fn jitted = ubpf_compile(vm, &error);
    if (jitted)
        jit_ns = measure(run_jitted, &jitted, mem, initial, len, rounds, budget_ns, &jit_retval, jit_out);
    else
        fprintf(stderr, "ubpf_driver: no JIT column: %s\n", error ? error : "ubpf_compile failed");
    printf("%" PRIu64 " %.3f %" PRIu64 " %.3f\n", interp_retval, interp_ns, jit_retval, jit_ns);
    ubpf_destroy(vm);
    return 0;
}

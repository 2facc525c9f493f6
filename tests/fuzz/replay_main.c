/* Driver for fuzz harnesses in builds without libFuzzer (gcc, the ASan+UBSan CI build).
 *
 * Replays every file of the corpus directories (or single files) given on the command line,
 * then a bounded number of deterministic mutations of each (bit flips, truncations,
 * insertions of boundary bytes), so the harness and the decoder behind it run under the
 * sanitizers on every test run, not only when someone runs the real fuzzer. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MUTATIONS_PER_INPUT 2000
#define REPLAY_MAX_INPUT    (1 << 20)

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
    /* xorshift64*: deterministic, so a failure reproduces with the same binary and corpus. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

static void run_one(const uint8_t *data, size_t size)
{
    /* Copy into an exact-size heap buffer so ASan catches any read past the end. */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        abort();
    memcpy(copy, data, size);
    LLVMFuzzerTestOneInput(copy, size);
    free(copy);
}

static void mutate_and_run(const uint8_t *seed, size_t size)
{
    static const uint8_t boundary[] = {0x00, 0x7f, 0x80, 0xc0, 0xc1, 0xcc, 0xcf,
                                       0xd9, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xff};
    uint8_t *buf = malloc(size + 64);
    if (!buf)
        abort();
    for (int i = 0; i < MUTATIONS_PER_INPUT; i++) {
        size_t n = size;
        memcpy(buf, seed, size);
        int ops = 1 + (int)(rng() % 4);
        for (int k = 0; k < ops; k++) {
            switch (rng() % 4) {
            case 0: /* flip a bit */
                if (n)
                    buf[rng() % n] ^= (uint8_t)(1u << (rng() % 8));
                break;
            case 1: /* truncate */
                if (n)
                    n = rng() % n;
                break;
            case 2: /* overwrite with a boundary byte */
                if (n)
                    buf[rng() % n] = boundary[rng() % sizeof(boundary)];
                break;
            case 3: /* insert a boundary byte */
                if (n < size + 63) {
                    size_t at = n ? rng() % n : 0;
                    memmove(buf + at + 1, buf + at, n - at);
                    buf[at] = boundary[rng() % sizeof(boundary)];
                    n++;
                }
                break;
            }
        }
        run_one(buf, n);
    }
    free(buf);
}

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    uint8_t *buf = malloc(REPLAY_MAX_INPUT);
    if (!buf)
        abort();
    size_t n = fread(buf, 1, REPLAY_MAX_INPUT, f);
    fclose(f);
    run_one(buf, n);
    mutate_and_run(buf, n);
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    int files = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            perror(argv[i]);
            return 1;
        }
        if (!S_ISDIR(st.st_mode)) {
            if (replay_file(argv[i]) == 0)
                files++;
            continue;
        }
        DIR *d = opendir(argv[i]);
        if (!d) {
            perror(argv[i]);
            return 1;
        }
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.')
                continue;
            char path[4096];
            snprintf(path, sizeof(path), "%s/%s", argv[i], de->d_name);
            if (replay_file(path) == 0)
                files++;
        }
        closedir(d);
    }
    /* Pure noise too, in case the corpus is thin. */
    uint8_t noise[512];
    for (int i = 0; i < 20000; i++) {
        size_t n = rng() % sizeof(noise);
        for (size_t k = 0; k < n; k++)
            noise[k] = (uint8_t)rng();
        run_one(noise, n);
    }
    if (files == 0) {
        fprintf(stderr, "replay: no corpus files found\n");
        return 1;
    }
    printf("replay: %d corpus files, %d mutations each, 20000 random inputs: no crash\n", files,
           MUTATIONS_PER_INPUT);
    return 0;
}

/* clock: the two clocks of the I/O layer, in milliseconds (and the monotonic one in
 * microseconds, for RTTs and delays below a millisecond).
 *
 * Protocol cores never read a clock (they take `now` as an argument); the drivers in node/
 * and the tools do, through these two functions:
 *   clock_wall_ms()  Unix time: HLC versions, token expiry, anything compared across nodes;
 *   clock_mono_ms()  monotonic: timers, timeouts, SWIM and tunnel deadlines. */
#ifndef POPMESH_COMMON_CLOCK_H
#define POPMESH_COMMON_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t clock_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static inline uint64_t clock_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Monotonic microseconds: round trips on loopback and user-space delays are well under a
 * millisecond, and a millisecond clock would read them as 0 or let a delay end early. */
static inline uint64_t clock_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* Monotonic seconds as a double, for benchmarks and simulators that print durations. */
static inline double clock_mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#endif

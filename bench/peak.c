/* FP32 FMA peak of this machine: each thread runs independent FMA chains on the widest
 * vectors the compiler targets (built with -march=native: AVX-512 where the CPU has it,
 * else AVX2). Usage: peak THREADS SECONDS -> prints GFLOP/s summed over threads. */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define CHAINS 12      /* enough independent accumulators to cover FMA latency x throughput */
#define ITERS 1000000L

#ifdef __AVX512F__
typedef __m512 vec;
#define LANES 16
#define SET1 _mm512_set1_ps
#define FMA _mm512_fmadd_ps
#define STORE _mm512_storeu_ps
#else
typedef __m256 vec;
#define LANES 8
#define SET1 _mm256_set1_ps
#define FMA _mm256_fmadd_ps
#define STORE _mm256_storeu_ps
#endif

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

typedef struct { double seconds; double flops; float sink; } job_t;

static void *worker(void *arg) {
  job_t *job = arg;
  vec acc[CHAINS];
  const vec a = SET1(0.999999f), b = SET1(1e-7f);
  for (int i = 0; i < CHAINS; ++i) acc[i] = SET1((float)i);
  double start = now(), flops = 0;
  do {
    for (long it = 0; it < ITERS; ++it)
      for (int i = 0; i < CHAINS; ++i) acc[i] = FMA(acc[i], a, b);
    flops += 2.0 * LANES * CHAINS * ITERS;
  } while (now() - start < job->seconds);
  job->seconds = now() - start;
  job->flops = flops;
  float out[LANES], s = 0;
  for (int i = 0; i < CHAINS; ++i) { STORE(out, acc[i]); s += out[0]; }
  job->sink = s;
  return NULL;
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 1;
  double seconds = argc > 2 ? atof(argv[2]) : 0.5;
  pthread_t tid[64];
  job_t jobs[64];
  if (threads < 1 || threads > 64) return 2;
  for (int t = 0; t < threads; ++t) {
    jobs[t].seconds = seconds;
    pthread_create(&tid[t], NULL, worker, &jobs[t]);
  }
  double gflops = 0, sink = 0;
  for (int t = 0; t < threads; ++t) {
    pthread_join(tid[t], NULL);
    gflops += jobs[t].flops / jobs[t].seconds / 1e9;
    sink += jobs[t].sink;
  }
  printf("%.2f\n", gflops);
  return sink == 12345.0f ? 1 : 0;
}

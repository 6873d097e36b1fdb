// The few parts of autocannon 8 (which ships no types) that bench/api.ts uses.
declare module 'autocannon' {
  interface Options {
    url: string
    connections?: number
    duration?: number
    /** Worker threads that generate the load; 0 runs it on the calling thread. */
    workers?: number
    pipelining?: number
    timeout?: number
    headers?: Record<string, string>
    title?: string
    /** A function, or in workers mode the path of a module exporting one; called with each client. */
    setupClient?: string
    /** Not autocannon's: extra keys reach the worker as `workerData.opts` (see bench/latency-recorder.cjs). */
    latencyHistogram?: SharedArrayBuffer
  }

  interface Histogram {
    average: number
    mean: number
    stddev: number
    min: number
    max: number
    total: number
    p1: number
    p2_5: number
    p10: number
    p25: number
    p50: number
    p75: number
    p90: number
    p97_5: number
    p99: number
    p99_9: number
    p99_99: number
    p99_999: number
  }

  interface Result {
    title?: string
    url: string
    connections: number
    duration: number
    latency: Histogram & { totalCount: number }
    requests: Histogram & { sent: number }
    throughput: Histogram
    errors: number
    timeouts: number
    mismatches: number
    non2xx: number
    '2xx': number
    '4xx': number
    '5xx': number
  }

  type Instance = PromiseLike<Result> & { stop(): void }

  function autocannon(options: Options): Instance

  export type { Histogram, Instance, Options, Result }
  export default autocannon
}

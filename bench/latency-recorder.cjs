'use strict'

// autocannon `setupClient` module, loaded inside autocannon's worker thread (bench/api.ts passes
// its path). autocannon's own histogram floors latencies to whole milliseconds; this records every
// response at 10 µs resolution into a histogram shared with the main thread: bucket i counts the
// responses that took i × 10 µs (rounded), the last bucket everything slower.
const { workerData } = require('node:worker_threads')

const shared = workerData?.opts?.latencyHistogram
const buckets = shared ? new Uint32Array(shared) : null
const last = buckets ? buckets.length - 1 : 0

module.exports = function setupClient(client) {
  if (!buckets) return
  client.on('response', (_statusCode, _bytes, durationMs) => {
    Atomics.add(buckets, Math.min(Math.round(durationMs * 100), last), 1)
  })
}

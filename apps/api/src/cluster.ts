import cluster, { type Worker } from 'node:cluster'
import type { Logger } from '@kiln/telemetry'

// The API on every core: this process (the cluster primary) forks `processes` API processes that
// share its port (node:cluster hands each connection to one of them) and only supervises them. Every
// API process is a whole API: its own database pool and Redis client; state shared between requests
// lives in PostgreSQL (idempotency, operations) or Redis (rate limits, logged-out sessions), and
// sessions are sealed cookies, so any process answers any request.

/** Time SIGTERM gives the API processes to finish in-flight requests before they are killed. */
const drainTimeoutMs = 25_000

/**
 * Runs `processes` API processes and replaces one that dies. One that dies before it ever listened
 * (bad configuration, an unreachable OIDC issuer) stops them all: restarting it would only hide why.
 * SIGTERM or SIGINT drains them (each closes its server and finishes in-flight requests) and exits.
 * Never resolves: the primary ends with process.exit.
 */
export function superviseApiProcesses(processes: number, logger: Logger): Promise<never> {
  const log = (level: 'info' | 'warn' | 'error', msg: string, fields: Record<string, unknown> = {}) =>
    logger[level]({ role: 'primary', ...fields }, msg)
  const listened = new Set<number>()
  let stopping: { reason: string; exitCode: number } | undefined

  const live = () => Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined)
  function stop(reason: string, exitCode: number) {
    if (stopping) return
    stopping = { reason, exitCode }
    if (live().length === 0) process.exit(exitCode)
    // Each API process runs its own graceful shutdown on SIGTERM (main.ts).
    for (const worker of live()) worker.process.kill('SIGTERM')
    setTimeout(() => {
      for (const worker of live()) worker.process.kill('SIGKILL')
      log('error', 'API processes did not stop in time; killed', { timeoutMs: drainTimeoutMs })
      process.exit(1)
    }, drainTimeoutMs).unref()
  }

  cluster.on('listening', (worker, address) => {
    if (listened.has(worker.id)) return
    listened.add(worker.id)
    if (listened.size === processes) {
      log('info', 'API listening', { processes, address: `${address.address ?? ''}:${address.port}` })
    }
  })
  cluster.on('exit', (worker, code, signal) => {
    const hadListened = listened.has(worker.id)
    if (stopping) {
      if (live().length === 0) {
        log('info', 'API stopped', { reason: stopping.reason })
        process.exit(stopping.exitCode)
      }
      return
    }
    if (!hadListened) {
      log('error', 'an API process exited before it listened; stopping', { code, signal })
      stop('an API process could not start', 1)
      return
    }
    log('warn', 'an API process exited; replacing it', { code, signal })
    cluster.fork()
  })
  process.on('SIGTERM', () => stop('SIGTERM', 0))
  process.on('SIGINT', () => stop('SIGINT', 0))

  for (let i = 0; i < processes; i++) cluster.fork()
  return new Promise<never>(() => {})
}

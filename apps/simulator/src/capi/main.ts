import { createLogger, logEvent } from '@kiln/telemetry'
import { loadStandInConfig } from './config.ts'
import { startClusterApiStandIn } from './controller.ts'

const config = loadStandInConfig()
const logger = createLogger({ service: 'kiln-capi-stand-in', level: config.logLevel })
const log = (event: Record<string, unknown>) => logEvent(logger, event)

const standIn = startClusterApiStandIn({
  kubeconfig: config.kubeconfig,
  ...(config.namespaces ? { namespaces: config.namespaces } : {}),
  intervalMs: config.intervalMs,
  log,
})
log({
  msg: 'Cluster API stand-in started',
  namespaces: config.namespaces ?? 'all',
  intervalMs: config.intervalMs,
})

let stopping = false
async function shutdown(signal: string) {
  if (stopping) return
  stopping = true
  log({ msg: 'Cluster API stand-in stopping', signal })
  await standIn.stop()
  log({ msg: 'Cluster API stand-in stopped', signal })
  process.exit(0)
}
process.once('SIGTERM', () => void shutdown('SIGTERM'))
process.once('SIGINT', () => void shutdown('SIGINT'))

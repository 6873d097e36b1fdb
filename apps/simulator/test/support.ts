import { execFile, spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import https from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parse } from 'yaml'
import {
  startTestStack,
  type TestStack,
  testDataCentre,
  testMasterKey,
} from '../../../test/support/engine.ts'
import {
  aSimulatedBackend,
  clusterUrl,
  createCluster,
  getCluster,
  waitForOperation,
} from '../../worker/test/support.ts'
import { type ApiServer, startApiServer } from '../src/server.ts'

export interface KubectlResult {
  code: number
  stdout: string
  stderr: string
}

export interface RawResponse {
  status: number
  type: string
  body: Record<string, unknown>
}

export interface SimulatedCluster {
  stack: TestStack
  server: ApiServer
  clusterId: string
  dir: string
  kubeconfig: string
  /** Runs the real kubectl against the cluster; never throws on a non-zero exit. */
  kubectl(args: string[], input?: string): Promise<KubectlResult>
  /** Waits (up to 10 s) for a CRD to be Established, as `kubectl wait` does. */
  waitEstablished(crd: string): Promise<KubectlResult>
  /** A request as any client sends it, with the admin kubeconfig's credentials and server name. */
  request(method: string, path: string, headers: Record<string, string>, body?: string): Promise<RawResponse>
  /** Starts `kubectl` and resolves once its output matches, returning what it printed so far. */
  kubectlUntil(args: string[], until: RegExp, timeoutMs?: number): { done: Promise<string>; stop(): void }
  /** Restarts the simulated API server on the same database and port. */
  restartServer(): Promise<void>
  close(): Promise<void>
}

/**
 * The path a user takes, for tests of the simulated API: a Kiln cluster created through the API
 * and the engine, a kubeconfig issued by the API, and the real kubectl (with its own discovery
 * cache, since every simulated cluster shares one address).
 */
export async function startSimulatedCluster(
  options: {
    name?: string
    template?: Parameters<typeof aSimulatedBackend>[3]
    create?: Record<string, unknown>
  } = {},
): Promise<SimulatedCluster> {
  const stack = await startTestStack({ engine: {} })
  let server = await startApiServer({ db: stack.db, masterKey: testMasterKey, port: 0 })
  const port = server.port
  await aSimulatedBackend(
    stack.db,
    'sim',
    { ...testDataCentre(), apiServerUrl: `https://127.0.0.1:${port}` },
    options.template ?? { name: 'k8s-1.31' },
  )
  const name = options.name ?? 'web'
  const op = await waitForOperation(
    stack.app,
    (await createCluster(stack.app, { name, template: 'k8s-1.31', ...options.create })).id,
    60_000,
  )
  if (op.status !== 'succeeded') throw new Error(`cluster create ${op.status}: ${JSON.stringify(op)}`)
  const cluster = await getCluster(stack.app, name)
  const issued = await stack.app.inject({
    method: 'POST',
    url: `${clusterUrl(name)}/kubeconfig`,
    payload: {},
  })
  if (issued.statusCode !== 201) throw new Error(`kubeconfig: ${issued.body}`)
  const dir = await mkdtemp(join(tmpdir(), 'kiln-kubectl-'))
  const kubeconfig = join(dir, 'kubeconfig.yaml')
  await writeFile(kubeconfig, issued.json<{ kubeconfig: string }>().kubeconfig, { mode: 0o600 })
  const config = parse(issued.json<{ kubeconfig: string }>().kubeconfig) as {
    clusters: { cluster: Record<string, string> }[]
    users: { user: Record<string, string> }[]
  }
  const base = ['--kubeconfig', kubeconfig, '--cache-dir', join(dir, 'cache'), '--request-timeout', '20s']

  const kubectl = (args: string[], input?: string) =>
    new Promise<KubectlResult>((resolve) => {
      const child = execFile('kubectl', [...base, ...args], { timeout: 30_000 }, (error, stdout, stderr) =>
        resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      )
      if (input !== undefined) child.stdin?.end(input)
      else child.stdin?.end()
    })

  return {
    stack,
    get server() {
      return server
    },
    clusterId: cluster.id,
    dir,
    kubeconfig,
    kubectl,
    waitEstablished: (crd) => kubectl(['wait', '--for=condition=Established', `crd/${crd}`, '--timeout=10s']),
    request: (method, path, headers, body) => {
      const cluster = config.clusters[0]!.cluster
      const user = config.users[0]!.user
      const url = new URL(path, cluster.server)
      return new Promise<RawResponse>((resolve, reject) => {
        const req = https.request(
          {
            method,
            host: url.hostname,
            port: url.port,
            path: `${url.pathname}${url.search}`,
            servername: cluster['tls-server-name'],
            ca: Buffer.from(cluster['certificate-authority-data']!, 'base64'),
            cert: Buffer.from(user['client-certificate-data']!, 'base64'),
            key: Buffer.from(user['client-key-data']!, 'base64'),
            headers,
          },
          (res) => {
            let text = ''
            res.on('data', (chunk) => (text += chunk))
            res.on('end', () =>
              resolve({
                status: res.statusCode ?? 0,
                type: String(res.headers['content-type']),
                body: JSON.parse(text),
              }),
            )
          },
        )
        req.on('error', reject)
        req.end(body)
      })
    },
    kubectlUntil(args, until, timeoutMs = 20_000) {
      const child = spawn('kubectl', [...base, ...args])
      let output = ''
      const done = new Promise<string>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`timed out waiting for ${until}; got:\n${output}`)),
          timeoutMs,
        )
        const onData = (chunk: Buffer) => {
          output += chunk.toString()
          if (until.test(output)) {
            clearTimeout(timer)
            resolve(output)
          }
        }
        child.stdout.on('data', onData)
        child.stderr.on('data', onData)
        child.on('exit', () => {
          clearTimeout(timer)
          if (until.test(output)) resolve(output)
          else reject(new Error(`kubectl exited before ${until}; got:\n${output}`))
        })
      })
      return { done, stop: () => child.kill() }
    },
    async restartServer() {
      await server.close()
      server = await startApiServer({ db: stack.db, masterKey: testMasterKey, port })
    },
    async close() {
      await server.close()
      await stack.close()
      await rm(dir, { recursive: true, force: true })
    },
  }
}

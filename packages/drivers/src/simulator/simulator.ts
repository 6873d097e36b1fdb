import pg from 'pg'
import {
  type Capabilities,
  type ClusterEndpoint,
  type ClusterRef,
  type Driver,
  DriverError,
  type MachineRef,
  type MachineSpec,
  type ObservedState,
  unobservable,
} from '../contract.ts'

export interface SimulatedMachineClass {
  name: string
  cpu: number
  memoryMiB: number
  gpuModel: string | null
  gpuCount: number
  /** Machines of this class in every rack of every zone it is offered in. */
  perRack: number
  /** Zones it is offered in; all zones when omitted. */
  zones?: string[]
}

export interface LatencyRange {
  minMs: number
  maxMs: number
}

/** A simulated data centre, as stored in a simulator backend's `config`. */
export interface SimulatorConfig {
  /**
   * Where the simulated API servers listen (apps/simulator): one address for every cluster, each
   * reached by its own TLS server name. Defaults to https://127.0.0.1:6443.
   */
  apiServerUrl?: string
  zones: string[]
  racksPerZone: number
  machineClasses: SimulatedMachineClass[]
  /** Per-call latency; near zero in tests, seconds in the demo. */
  latency?: Partial<
    Record<'default' | 'ensureMachines' | 'bootstrap' | 'joinMachines' | 'releaseMachines', LatencyRange>
  >
  faults?: {
    seed: number
    /** Probability that a mutating call fails with a retryable ERR_TRANSIENT before doing anything. */
    callFailureRate?: number
    /** Probability, per observation of a joined machine, that it dies. */
    machineDeathRate?: number
  }
}

/** A small, seeded PRNG (mulberry32): the same seed gives the same faults. */
function seeded(seed: number) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const schemaSql = `
CREATE SCHEMA IF NOT EXISTS simulator;
CREATE TABLE IF NOT EXISTS simulator.machines (
  id            text PRIMARY KEY,
  backend       text NOT NULL,
  zone          text NOT NULL,
  rack          text NOT NULL,
  machine_class text NOT NULL,
  -- The Kiln machine name it is allocated to. UNIQUE: one name can never hold two machines.
  allocated_to  text UNIQUE,
  cluster_id    text,
  state         text NOT NULL DEFAULT 'free' CHECK (state IN ('free', 'allocated', 'joined', 'dead')),
  updated_at    timestamptz NOT NULL DEFAULT now()
);
-- Serves both the claim (first free machine by rack) and the free counts, from the index alone.
DROP INDEX IF EXISTS simulator.machines_free;
CREATE INDEX IF NOT EXISTS machines_free_by_rack ON simulator.machines (backend, machine_class, zone, rack, id)
  WHERE allocated_to IS NULL AND state = 'free';
-- A machine the data centre's operators took out of service, with their reason (positive evidence).
ALTER TABLE simulator.machines ADD COLUMN IF NOT EXISTS maintenance text;
-- A simulated outage of a whole data centre, seen by every driver instance (worker) of the backend.
CREATE TABLE IF NOT EXISTS simulator.outages (
  backend           text PRIMARY KEY,
  -- 'down': nothing answers; 'observations': only the next observations_left observe calls go unanswered.
  mode              text NOT NULL CHECK (mode IN ('down', 'observations')),
  until             timestamptz,
  observations_left integer
);
CREATE TABLE IF NOT EXISTS simulator.clusters (
  id         text PRIMARY KEY,
  backend    text NOT NULL,
  endpoint   text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);`

/** A simulated outage, as stored in simulator.outages. */
interface Outage {
  mode: 'down' | 'observations'
  until: Date | null
  observationsLeft: number | null
}

/** How long an instance trusts what it last read from simulator.outages: calls stay cheap. */
const outageCacheMs = 250

/**
 * The embedded default backend: a simulated data centre with zones, racks and machine classes,
 * finite capacity, latency and seeded faults. Its inventory lives in Postgres (schema `simulator`),
 * the way a real data centre's lives in its own systems, so it survives worker restarts.
 */
export class SimulatorDriver implements Driver {
  readonly kind = 'simulator' as const
  private readonly pool: pg.Pool
  private readonly random: () => number
  private ready: Promise<void> | undefined
  private outageRead: { at: number; outage: Promise<Outage | undefined> } | undefined

  constructor(
    readonly backend: string,
    readonly config: SimulatorConfig,
    databaseUrl: string,
  ) {
    this.pool = new pg.Pool({ connectionString: databaseUrl, max: 8 })
    this.pool.on('error', () => {
      // Idle-client errors (a restarting Postgres) surface on the next query instead.
    })
    // A client whose server goes away emits 'error' even while checked out; unheard, that kills the
    // process. The failure still reaches the query that was using it.
    this.pool.on('connect', (client) => {
      client.on('error', () => {})
    })
    this.random = seeded(config.faults?.seed ?? 1)
  }

  /** Creates the simulator's tables and racks its inventory; idempotent. */
  private init(): Promise<void> {
    this.ready ??= (async () => {
      const client = await this.pool.connect()
      // A checked-out client whose connection drops emits 'error'; unheard, that kills the process.
      let broken: Error | undefined
      const onError = (error: Error) => {
        broken = error
      }
      client.on('error', onError)
      try {
        // Serialise first-time setup across worker processes. A transaction-scoped lock, not a session
        // one: behind PgBouncer in transaction mode, a session lock could stay on a server connection.
        await client.query('BEGIN')
        try {
          await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', ['kiln-simulator-schema'])
          await client.query(schemaSql)
          await this.rackInventory(client)
          await client.query('COMMIT')
        } catch (error) {
          await client.query('ROLLBACK').catch(() => undefined)
          throw error
        }
      } finally {
        client.off('error', onError)
        client.release(broken)
      }
    })().catch((e) => {
      this.ready = undefined
      throw e
    })
    return this.ready
  }

  private async rackInventory(client: pg.PoolClient) {
    const ids: string[] = []
    const zones: string[] = []
    const racks: string[] = []
    const classes: string[] = []
    for (const zone of this.config.zones) {
      for (let r = 1; r <= this.config.racksPerZone; r++) {
        const rack = `${zone}-r${String(r).padStart(2, '0')}`
        for (const mc of this.config.machineClasses) {
          if (mc.zones && !mc.zones.includes(zone)) continue
          for (let m = 1; m <= mc.perRack; m++) {
            ids.push(`${this.backend}/${rack}/${mc.name}/${m}`)
            zones.push(zone)
            racks.push(rack)
            classes.push(mc.name)
          }
        }
      }
    }
    await client.query(
      `INSERT INTO simulator.machines (id, backend, zone, rack, machine_class)
       SELECT id, $5, zone, rack, mc FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS t(id, zone, rack, mc)
       ON CONFLICT (id) DO NOTHING`,
      [ids, zones, racks, classes, this.backend],
    )
  }

  private async simulateCall(call: 'ensureMachines' | 'bootstrap' | 'joinMachines' | 'releaseMachines') {
    const range = this.config.latency?.[call] ?? this.config.latency?.default
    if (range && range.maxMs > 0) {
      const ms = range.minMs + this.random() * (range.maxMs - range.minMs)
      await new Promise((resolve) => setTimeout(resolve, ms))
    }
    const rate = this.config.faults?.callFailureRate ?? 0
    if (rate > 0 && this.random() < rate) {
      throw new DriverError('ERR_TRANSIENT', `Simulated fault in ${call} (seed ${this.config.faults?.seed}).`)
    }
  }

  /** The outage in force, read at most every 250 ms (this instance's own changes at once). */
  private currentOutage(): Promise<Outage | undefined> {
    const now = Date.now()
    if (!this.outageRead || now - this.outageRead.at >= outageCacheMs) {
      const outage = this.pool
        .query<{ mode: Outage['mode']; until: Date | null; observations_left: number | null }>(
          'SELECT mode, until, observations_left FROM simulator.outages WHERE backend = $1',
          [this.backend],
        )
        .then(({ rows }) => {
          const row = rows[0]
          return row && { mode: row.mode, until: row.until, observationsLeft: row.observations_left }
        })
      outage.catch(() => {
        this.outageRead = undefined
      })
      this.outageRead = { at: now, outage }
    }
    return this.outageRead.outage.then((outage) =>
      outage &&
      (outage.until === null || outage.until.getTime() > Date.now()) &&
      (outage.mode === 'down' || (outage.observationsLeft ?? 0) > 0)
        ? outage
        : undefined,
    )
  }

  private outageMessage(outage: Outage): string {
    return `The simulated data centre '${this.backend}' does not answer (a simulated outage${
      outage.until ? ` until ${outage.until.toISOString()}` : ''
    }).`
  }

  /** Every call but observe fails while the data centre is down, as a real one's API would. */
  private async answering(): Promise<void> {
    await this.init()
    const outage = await this.currentOutage()
    if (outage?.mode === 'down') throw new DriverError('ERR_UNAVAILABLE', this.outageMessage(outage))
  }

  /**
   * Fault injection for tests and the demo: the data centre stops answering, for every driver
   * instance of this backend, until `endOutage` or for `forMs`. With `failObservations` only the
   * next that many observe calls go unanswered (like failed lookups), and everything else works.
   */
  async startOutage(options: { forMs?: number; failObservations?: number } = {}): Promise<void> {
    await this.init()
    const mode = options.failObservations === undefined ? 'down' : 'observations'
    await this.pool.query(
      `INSERT INTO simulator.outages (backend, mode, until, observations_left) VALUES ($1, $2, $3, $4)
       ON CONFLICT (backend) DO UPDATE SET mode = $2, until = $3, observations_left = $4`,
      [
        this.backend,
        mode,
        options.forMs === undefined ? null : new Date(Date.now() + options.forMs),
        options.failObservations ?? null,
      ],
    )
    this.outageRead = undefined
  }

  async endOutage(): Promise<void> {
    await this.init()
    await this.pool.query('DELETE FROM simulator.outages WHERE backend = $1', [this.backend])
    this.outageRead = undefined
  }

  /** Whether this observe call goes unanswered; an 'observations' outage counts down atomically. */
  private async observationFails(): Promise<Outage | undefined> {
    const outage = await this.currentOutage()
    if (!outage || outage.mode === 'down') return outage
    const { rows } = await this.pool.query<{ until: Date | null }>(
      `UPDATE simulator.outages SET observations_left = observations_left - 1
       WHERE backend = $1 AND mode = 'observations' AND observations_left > 0 RETURNING until`,
      [this.backend],
    )
    if (rows.length === 0) return undefined
    // Counted down: the next call reads how many are left.
    this.outageRead = undefined
    return outage
  }

  async capabilities(): Promise<Capabilities> {
    await this.answering()
    const { rows } = await this.pool.query<{ machine_class: string; zone: string; free: string }>(
      `SELECT machine_class, zone, count(*) AS free FROM simulator.machines
       WHERE backend = $1 AND allocated_to IS NULL AND state = 'free' GROUP BY machine_class, zone`,
      [this.backend],
    )
    return {
      zones: [...this.config.zones],
      machineClasses: this.config.machineClasses.map((mc) => ({
        name: mc.name,
        cpu: mc.cpu,
        memoryMiB: mc.memoryMiB,
        gpuModel: mc.gpuModel,
        gpuCount: mc.gpuCount,
        available: Object.fromEntries(
          rows.filter((r) => r.machine_class === mc.name).map((r) => [r.zone, Number(r.free)]),
        ),
      })),
    }
  }

  async ensureMachines(cluster: ClusterRef, machines: MachineSpec[]): Promise<MachineRef[]> {
    await this.answering()
    await this.simulateCall('ensureMachines')
    const refs: MachineRef[] = []
    for (const spec of machines) {
      const known = this.config.machineClasses.find((mc) => mc.name === spec.machineClass)
      if (!known) {
        throw new DriverError(
          'ERR_INVALID_REQUEST',
          `This data centre has no machine class '${spec.machineClass}'.`,
        )
      }
      if (!this.config.zones.includes(spec.zone) || (known.zones && !known.zones.includes(spec.zone))) {
        throw new DriverError(
          'ERR_INVALID_REQUEST',
          `Machine class '${spec.machineClass}' is not offered in zone '${spec.zone}'.`,
        )
      }
      const existing = await this.adopt(spec.name)
      if (existing) {
        refs.push(existing)
        continue
      }
      const claimed = await this.claim(spec, cluster)
      if (claimed === 'taken') {
        // A concurrent call claimed this very name a moment ago: adopt what it claimed.
        refs.push((await this.adopt(spec.name))!)
        continue
      }
      if (!claimed) {
        throw new DriverError(
          'ERR_CAPACITY',
          `No free '${spec.machineClass}' machine in zone '${spec.zone}' of data centre '${this.backend}'.`,
        )
      }
      refs.push({
        name: spec.name,
        externalId: claimed.id,
        zone: claimed.zone,
        machineClass: spec.machineClass,
      })
    }
    return refs
  }

  private async adopt(name: string): Promise<MachineRef | undefined> {
    const { rows } = await this.pool.query<{ id: string; zone: string; machine_class: string }>(
      'SELECT id, zone, machine_class FROM simulator.machines WHERE backend = $1 AND allocated_to = $2',
      [this.backend, name],
    )
    const row = rows[0]
    return row && { name, externalId: row.id, zone: row.zone, machineClass: row.machine_class }
  }

  /**
   * Picks a free machine and claims it in one statement: SKIP LOCKED lets concurrent workers claim
   * different machines, and the UNIQUE allocated_to refuses a second claim on one name ('taken').
   */
  private async claim(
    spec: MachineSpec,
    cluster: ClusterRef,
  ): Promise<{ id: string; zone: string } | undefined | 'taken'> {
    try {
      const { rows } = await this.pool.query<{ id: string; zone: string }>(
        `UPDATE simulator.machines SET allocated_to = $1, cluster_id = $2, state = 'allocated', updated_at = now()
         WHERE id = (
           SELECT id FROM simulator.machines
           WHERE backend = $3 AND machine_class = $4 AND zone = $5 AND allocated_to IS NULL AND state = 'free'
           ORDER BY rack, id LIMIT 1 FOR UPDATE SKIP LOCKED)
         RETURNING id, zone`,
        [spec.name, cluster.id, this.backend, spec.machineClass, spec.zone],
      )
      return rows[0]
    } catch (error) {
      if ((error as { code?: string }).code === '23505') return 'taken'
      throw error
    }
  }

  async releaseMachines(cluster: ClusterRef, names: string[]): Promise<void> {
    if (names.length === 0) return
    await this.answering()
    await this.simulateCall('releaseMachines')
    await this.pool.query(
      // Dead hardware (and hardware in maintenance) goes to repair, not back into the pool. A cluster
      // left without machines is forgotten, or every deleted cluster would keep its row forever. The
      // statement's snapshot still shows the released machines, hence `<> ALL`.
      `WITH released AS (
         UPDATE simulator.machines SET allocated_to = NULL, cluster_id = NULL,
           state = CASE WHEN state = 'dead' OR maintenance IS NOT NULL THEN 'dead' ELSE 'free' END,
           updated_at = now()
         WHERE backend = $2 AND allocated_to = ANY($1::text[])
         RETURNING cluster_id)
       DELETE FROM simulator.clusters c
       WHERE c.backend = $2
         AND (c.id = $3 OR c.id IN (SELECT cluster_id FROM released))
         AND NOT EXISTS (
           SELECT 1 FROM simulator.machines m
           WHERE m.backend = $2 AND m.cluster_id = c.id AND m.allocated_to <> ALL($1::text[]))`,
      [names, this.backend, cluster.id],
    )
  }

  async bootstrap(cluster: ClusterRef, controlPlane: MachineRef[]): Promise<ClusterEndpoint> {
    await this.answering()
    await this.simulateCall('bootstrap')
    if (controlPlane.length === 0)
      throw new DriverError('ERR_INVALID_REQUEST', 'A control plane needs machines.')
    const endpoint = {
      server: this.config.apiServerUrl ?? 'https://127.0.0.1:6443',
      // The name apps/simulator routes by (its SIMULATOR_API_DOMAIN, clusters.sim.kiln.internal).
      tlsServerName: `${cluster.id}.clusters.sim.kiln.internal`,
    }
    await this.pool.query(
      `INSERT INTO simulator.clusters (id, backend, endpoint) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING`,
      [cluster.id, this.backend, endpoint.tlsServerName],
    )
    await this.markJoined(controlPlane.map((m) => m.name))
    return endpoint
  }

  async joinMachines(_cluster: ClusterRef, machines: MachineRef[]): Promise<void> {
    if (machines.length === 0) return
    await this.answering()
    await this.simulateCall('joinMachines')
    await this.markJoined(machines.map((m) => m.name))
  }

  private async markJoined(names: string[]) {
    const { rows } = await this.pool.query<{ allocated_to: string }>(
      `UPDATE simulator.machines SET state = 'joined', updated_at = now()
       WHERE backend = $2 AND allocated_to = ANY($1::text[]) AND state = 'allocated' RETURNING allocated_to`,
      [names, this.backend],
    )
    const present = await this.pool.query<{ n: string }>(
      'SELECT count(*) AS n FROM simulator.machines WHERE backend = $2 AND allocated_to = ANY($1::text[])',
      [names, this.backend],
    )
    if (Number(present.rows[0]!.n) < names.length) {
      throw new DriverError(
        'ERR_PROVISION_FAILED',
        `Some machines to join are not allocated (${rows.length} joined).`,
      )
    }
  }

  async observe(cluster: ClusterRef, machineNames: string[]): Promise<ObservedState> {
    await this.init()
    const outage = await this.observationFails()
    if (outage) {
      // The same contract as a real backend that does not answer: no verdict on any machine.
      const reason = this.outageMessage(outage)
      return unobservable(machineNames, reason)
    }
    const deathRate = this.config.faults?.machineDeathRate ?? 0
    if (deathRate > 0) {
      for (const name of machineNames) {
        if (this.random() < deathRate) await this.killMachine(name)
      }
    }
    const [machines, clusters] = await Promise.all([
      this.pool.query<{ allocated_to: string; state: string; maintenance: string | null }>(
        'SELECT allocated_to, state, maintenance FROM simulator.machines WHERE backend = $2 AND allocated_to = ANY($1::text[])',
        [machineNames, this.backend],
      ),
      this.pool.query('SELECT 1 FROM simulator.clusters WHERE backend = $2 AND id = $1', [
        cluster.id,
        this.backend,
      ]),
    ])
    const byName = new Map(machines.rows.map((r) => [r.allocated_to, r]))
    return {
      controlPlaneReachable: (clusters.rowCount ?? 0) > 0,
      backendReachable: true,
      machines: machineNames.map((name) => {
        const row = byName.get(name)
        if (row === undefined) return { name, health: 'Missing' as const, reason: 'NotAllocated' }
        const state = row.state
        if (row.maintenance !== null)
          return {
            name,
            health: 'Unhealthy' as const,
            reason: `Maintenance: ${row.maintenance}`,
            definite: true,
          }
        if (state === 'dead')
          return { name, health: 'Unhealthy' as const, reason: 'HardwareFailure', definite: true }
        if (state !== 'joined') return { name, health: 'Unhealthy' as const, reason: 'NotJoined' }
        return { name, health: 'Healthy' as const, reason: 'Joined' }
      }),
    }
  }

  /** Fault injection for tests and the demo: the machine's hardware fails. */
  async killMachine(name: string): Promise<void> {
    await this.pool.query(
      `UPDATE simulator.machines SET state = 'dead', updated_at = now() WHERE backend = $2 AND allocated_to = $1`,
      [name, this.backend],
    )
  }

  /**
   * Fault injection for tests and the demo: the data centre's operators put the machine in
   * maintenance (observe reports it Unhealthy with the reason), or take it out again (null).
   * Released while in maintenance, it goes to repair, not back into the pool.
   */
  async setMaintenance(name: string, reason: string | null): Promise<void> {
    await this.init()
    await this.pool.query(
      `UPDATE simulator.machines SET maintenance = $1, updated_at = now() WHERE backend = $3 AND allocated_to = $2`,
      [reason, name, this.backend],
    )
  }

  /** The data centre's own books, for tests and benchmarks. */
  async inventory(): Promise<{
    total: number
    allocated: number
    allocatedNames: string[]
    clusterIds: string[]
    /** Clusters whose control plane the data centre runs (bootstrapped, with machines left). */
    controlPlanes: string[]
  }> {
    await this.init()
    const [{ rows }, controlPlanes] = await Promise.all([
      this.pool.query<{ allocated_to: string | null; cluster_id: string | null }>(
        'SELECT allocated_to, cluster_id FROM simulator.machines WHERE backend = $1',
        [this.backend],
      ),
      this.pool.query<{ id: string }>('SELECT id FROM simulator.clusters WHERE backend = $1 ORDER BY id', [
        this.backend,
      ]),
    ])
    const allocated = rows.filter((r) => r.allocated_to !== null)
    return {
      total: rows.length,
      allocated: allocated.length,
      allocatedNames: allocated.map((r) => r.allocated_to!),
      clusterIds: [...new Set(allocated.map((r) => r.cluster_id!))],
      controlPlanes: controlPlanes.rows.map((r) => r.id),
    }
  }

  async close(): Promise<void> {
    await this.pool.end()
  }
}

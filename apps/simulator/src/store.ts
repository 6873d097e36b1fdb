import { EventEmitter } from 'node:events'
import type pg from 'pg'
import type { ResourceType } from './resources.ts'

// Each simulated cluster's Kubernetes objects, in PostgreSQL (schema `simulator`, beside the
// simulated data centre's own tables) so they survive a restart of the simulator process.
// resourceVersion is one sequence for all clusters: monotonic per cluster is all clients assume.
// A delete leaves a tombstone so a watch resumed from an older resourceVersion still sees it.

export type KubeObject = Record<string, unknown> & {
  metadata: Record<string, unknown> & { name: string; namespace?: string }
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED'

export interface StoreEvent {
  clusterId: string
  group: string
  resource: string
  namespace: string
  type: WatchEventType
  object: KubeObject
  resourceVersion: number
}

export class StoreConflict extends Error {
  constructor(readonly reason: 'AlreadyExists' | 'NotFound' | 'Conflict') {
    super(reason)
  }
}

const schema = `
CREATE SCHEMA IF NOT EXISTS simulator;
CREATE SEQUENCE IF NOT EXISTS simulator.kube_resource_version;
CREATE TABLE IF NOT EXISTS simulator.kube_objects (
  cluster_id uuid NOT NULL,
  api_group text NOT NULL,
  resource text NOT NULL,
  namespace text NOT NULL DEFAULT '',
  name text NOT NULL,
  resource_version bigint NOT NULL,
  created_version bigint NOT NULL,
  deleted boolean NOT NULL DEFAULT false,
  body jsonb NOT NULL,
  PRIMARY KEY (cluster_id, api_group, resource, namespace, name)
);
CREATE INDEX IF NOT EXISTS kube_objects_changes ON simulator.kube_objects (cluster_id, resource_version);
CREATE INDEX IF NOT EXISTS kube_objects_labels ON simulator.kube_objects
  USING gin ((body->'metadata'->'labels') jsonb_path_ops);
`

interface Row {
  namespace: string
  name: string
  resource_version: string
  created_version: string
  deleted: boolean
  body: KubeObject
}

const withVersion = (row: Row): KubeObject => ({
  ...row.body,
  metadata: { ...row.body.metadata, resourceVersion: row.resource_version },
})

/** The body as stored: resourceVersion lives in its own column. */
function bodyOf(object: KubeObject): KubeObject {
  const { resourceVersion: _, ...metadata } = object.metadata
  return { ...object, metadata: metadata as KubeObject['metadata'] }
}

/** What a list can leave to PostgreSQL: labels every object must carry (exact values), a name. */
export interface ListNarrowing {
  labels?: Record<string, string>
  name?: string
}

/** The query behind `ObjectStore.list`, exported so a test can EXPLAIN exactly what runs. */
export function listQuery(
  clusterId: string,
  type: ResourceType,
  namespace: string | undefined,
  narrow: ListNarrowing = {},
): { text: string; values: unknown[] } {
  const values: unknown[] = [clusterId, type.group, type.resource]
  const where = ['cluster_id = $1', 'api_group = $2', 'resource = $3', 'NOT deleted']
  if (namespace !== undefined) where.push(`namespace = $${values.push(namespace)}`)
  if (narrow.name !== undefined) where.push(`name = $${values.push(narrow.name)}`)
  // The expression of the GIN index kube_objects_labels, verbatim, or the planner cannot use it.
  if (narrow.labels && Object.keys(narrow.labels).length > 0)
    where.push(`body->'metadata'->'labels' @> $${values.push(JSON.stringify(narrow.labels))}::jsonb`)
  return {
    text: `SELECT namespace, name, resource_version, created_version, deleted, body FROM simulator.kube_objects
       WHERE ${where.join(' AND ')}
       ORDER BY namespace, name`,
    values,
  }
}

export class ObjectStore {
  private readonly events = new EventEmitter()

  constructor(private readonly pool: pg.Pool) {
    this.events.setMaxListeners(0)
  }

  async ensureSchema(): Promise<void> {
    const client = await this.pool.connect()
    try {
      // The same (transaction-scoped, PgBouncer-safe) lock the simulated data centre takes to create
      // its tables in this schema.
      await client.query('BEGIN')
      try {
        await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', ['kiln-simulator-schema'])
        await client.query(schema)
        await client.query('COMMIT')
      } catch (error) {
        await client.query('ROLLBACK').catch(() => undefined)
        throw error
      }
    } finally {
      client.release()
    }
  }

  /** Every change, after it committed. */
  onChange(listener: (event: StoreEvent) => void): () => void {
    this.events.on('change', listener)
    return () => this.events.off('change', listener)
  }

  private emit(clusterId: string, type: ResourceType, kind: WatchEventType, row: Row) {
    const event: StoreEvent = {
      clusterId,
      group: type.group,
      resource: type.resource,
      namespace: row.namespace,
      type: kind,
      object: withVersion(row),
      resourceVersion: Number(row.resource_version),
    }
    this.events.emit('change', event)
  }

  async get(clusterId: string, type: ResourceType, namespace: string, name: string) {
    const { rows } = await this.pool.query<Row>(
      `SELECT namespace, name, resource_version, created_version, deleted, body FROM simulator.kube_objects
       WHERE cluster_id = $1 AND api_group = $2 AND resource = $3 AND namespace = $4 AND name = $5 AND NOT deleted`,
      [clusterId, type.group, type.resource, namespace, name],
    )
    return rows[0] ? withVersion(rows[0]) : undefined
  }

  /**
   * Live objects of a type, in one namespace or (undefined) all, sorted by namespace and name;
   * `narrow` keeps only those with these labels and name.
   */
  async list(
    clusterId: string,
    type: ResourceType,
    namespace?: string,
    narrow: ListNarrowing = {},
  ): Promise<KubeObject[]> {
    const { rows } = await this.pool.query<Row>(listQuery(clusterId, type, namespace, narrow))
    return rows.map(withVersion)
  }

  /** Whether the cluster has ever had an object (tombstones count). */
  async hasObjects(clusterId: string): Promise<boolean> {
    const { rowCount } = await this.pool.query(
      'SELECT 1 FROM simulator.kube_objects WHERE cluster_id = $1 LIMIT 1',
      [clusterId],
    )
    return (rowCount ?? 0) > 0
  }

  /** The newest resourceVersion of a cluster: a list at this version includes every change so far. */
  async currentVersion(clusterId: string): Promise<number> {
    const { rows } = await this.pool.query<{ rv: string | null }>(
      'SELECT max(resource_version) AS rv FROM simulator.kube_objects WHERE cluster_id = $1',
      [clusterId],
    )
    return Number(rows[0]?.rv ?? 1)
  }

  /** Changes (tombstones included) after `since`, oldest first, for a watch to replay. */
  async changesSince(
    clusterId: string,
    type: ResourceType,
    namespace: string | undefined,
    since: number,
  ): Promise<StoreEvent[]> {
    const { rows } = await this.pool.query<Row>(
      `SELECT namespace, name, resource_version, created_version, deleted, body FROM simulator.kube_objects
       WHERE cluster_id = $1 AND api_group = $2 AND resource = $3 AND ($4::text IS NULL OR namespace = $4)
         AND resource_version > $5
       ORDER BY resource_version`,
      [clusterId, type.group, type.resource, namespace ?? null, since],
    )
    return rows.map((row) => ({
      clusterId,
      group: type.group,
      resource: type.resource,
      namespace: row.namespace,
      type: row.deleted ? 'DELETED' : Number(row.created_version) > since ? 'ADDED' : 'MODIFIED',
      object: withVersion(row),
      resourceVersion: Number(row.resource_version),
    }))
  }

  /** Inserts a new object; a tombstone of the same name is replaced. */
  async create(clusterId: string, type: ResourceType, object: KubeObject): Promise<KubeObject> {
    const namespace = type.namespaced ? String(object.metadata.namespace ?? '') : ''
    const { rows } = await this.pool.query<Row>(
      `WITH v AS (SELECT nextval('simulator.kube_resource_version') AS rv)
       INSERT INTO simulator.kube_objects AS o
         (cluster_id, api_group, resource, namespace, name, resource_version, created_version, body)
       SELECT $1, $2, $3, $4, $5, v.rv, v.rv, $6 FROM v
       ON CONFLICT (cluster_id, api_group, resource, namespace, name) DO UPDATE
         SET resource_version = excluded.resource_version, created_version = excluded.created_version,
             deleted = false, body = excluded.body
         WHERE o.deleted
       RETURNING namespace, name, resource_version, created_version, deleted, body`,
      [clusterId, type.group, type.resource, namespace, object.metadata.name, bodyOf(object)],
    )
    if (!rows[0]) throw new StoreConflict('AlreadyExists')
    this.emit(clusterId, type, 'ADDED', rows[0])
    return withVersion(rows[0])
  }

  /**
   * Replaces a live object; with `expectedVersion`, only if nobody changed it since. With `remove`,
   * the object is written as its tombstone in the same step: the last update of an object being
   * deleted (its finalizers emptied) is one DELETED event, as in Kubernetes.
   */
  async update(
    clusterId: string,
    type: ResourceType,
    object: KubeObject,
    expectedVersion?: string,
    options: { remove?: boolean } = {},
  ): Promise<KubeObject> {
    const namespace = type.namespaced ? String(object.metadata.namespace ?? '') : ''
    const { rows } = await this.pool.query<Row>(
      `UPDATE simulator.kube_objects
       SET resource_version = nextval('simulator.kube_resource_version'), body = $6, deleted = $8
       WHERE cluster_id = $1 AND api_group = $2 AND resource = $3 AND namespace = $4 AND name = $5
         AND NOT deleted AND ($7::bigint IS NULL OR resource_version = $7::bigint)
       RETURNING namespace, name, resource_version, created_version, deleted, body`,
      [
        clusterId,
        type.group,
        type.resource,
        namespace,
        object.metadata.name,
        bodyOf(object),
        expectedVersion ?? null,
        options.remove ?? false,
      ],
    )
    if (!rows[0]) {
      const exists = await this.get(clusterId, type, namespace, object.metadata.name)
      throw new StoreConflict(exists ? 'Conflict' : 'NotFound')
    }
    this.emit(clusterId, type, options.remove ? 'DELETED' : 'MODIFIED', rows[0])
    return withVersion(rows[0])
  }

  /** Deletes a live object (leaving a tombstone); with `expectedVersion`, only that version. */
  async remove(
    clusterId: string,
    type: ResourceType,
    namespace: string,
    name: string,
    expectedVersion?: string,
  ): Promise<KubeObject> {
    const { rows } = await this.pool.query<Row>(
      `UPDATE simulator.kube_objects
       SET resource_version = nextval('simulator.kube_resource_version'), deleted = true
       WHERE cluster_id = $1 AND api_group = $2 AND resource = $3 AND namespace = $4 AND name = $5
         AND NOT deleted AND ($6::bigint IS NULL OR resource_version = $6::bigint)
       RETURNING namespace, name, resource_version, created_version, deleted, body`,
      [clusterId, type.group, type.resource, namespace, name, expectedVersion ?? null],
    )
    if (!rows[0]) {
      const exists = await this.get(clusterId, type, namespace, name)
      throw new StoreConflict(exists ? 'Conflict' : 'NotFound')
    }
    this.emit(clusterId, type, 'DELETED', rows[0])
    return withVersion(rows[0])
  }

  /** Deletes everything in a namespace (what the namespace controller does), for each type given. */
  async removeNamespaceContents(
    clusterId: string,
    types: ResourceType[],
    namespace: string,
  ): Promise<number> {
    let removed = 0
    for (const type of types.filter((t) => t.namespaced && !t.readOnly)) {
      const { rows } = await this.pool.query<Row>(
        `UPDATE simulator.kube_objects
         SET resource_version = nextval('simulator.kube_resource_version'), deleted = true
         WHERE cluster_id = $1 AND api_group = $2 AND resource = $3 AND namespace = $4 AND NOT deleted
         RETURNING namespace, name, resource_version, created_version, deleted, body`,
        [clusterId, type.group, type.resource, namespace],
      )
      for (const row of rows) this.emit(clusterId, type, 'DELETED', row)
      removed += rows.length
    }
    return removed
  }

  /** Forgets the objects of clusters Kiln no longer has. */
  async purgeDeletedClusters(): Promise<number> {
    const { rowCount } = await this.pool.query(
      `DELETE FROM simulator.kube_objects o
       WHERE NOT EXISTS (SELECT 1 FROM public."Cluster" c WHERE c.id = o.cluster_id)`,
    )
    return rowCount ?? 0
  }
}

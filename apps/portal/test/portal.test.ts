import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { aSimulatedBackend } from '../../../apps/worker/test/support.ts'
import { aKubernetesVersion, aTemplate } from '../../../test/support/builders.ts'
import { startTestStack, type TestStack, testDataCentre } from '../../../test/support/engine.ts'
import { freePort, startTestIssuer, testOidcSettings } from '../../../test/support/oidc.ts'
import { OidcVerifier } from '../../api/src/oidc.ts'
import { type RunningIssuer, userAccessToken } from '../../issuer/src/index.ts'

// The portal end to end in Debian's Chromium (playwright-core, headless): the built portal served by
// the real API (OIDC login at a real issuer, authentication required), the engine and the simulated
// API servers. Screenshots of the main pages go to test-results/portal/.

const run = promisify(execFile)
const shots = join(process.cwd(), 'test-results', 'portal')
let dir: string
let issuer: RunningIssuer
let stack: TestStack
let apiUrl: string
let browser: Browser
const consoleErrors: string[] = []

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kiln-portal-'))
  await mkdir(shots, { recursive: true })
  const portalDir = join(dir, 'dist')
  await run('npx', ['vite', 'build', '--outDir', portalDir, '--logLevel', 'warn'], { cwd: 'apps/portal' })
  const port = await freePort()
  apiUrl = `http://127.0.0.1:${port}`
  issuer = await startTestIssuer({ apiUrl })
  const settings = testOidcSettings(issuer, {
    apiUrl,
    postLoginRedirect: `${apiUrl}/portal/`,
    scopes: ['openid', 'profile', 'email', 'groups'],
  })
  stack = await startTestStack({
    engine: {},
    api: {
      authentication: 'required',
      oidc: { verifier: await OidcVerifier.discover(settings), settings },
      platformAdminGroups: ['kiln:platform-admins'],
      portalDir,
    },
  })
  const dataCentre = testDataCentre()
  dataCentre.machineClasses.push({
    name: 'm1.xlarge',
    cpu: 8,
    memoryMiB: 32768,
    gpuModel: null,
    gpuCount: 0,
    perRack: 10,
  })
  const { backend } = await aSimulatedBackend(stack.db, 'sim', dataCentre, {
    name: 'k8s-1.31',
    nodeGroups: [{ name: 'workers', machineClass: 'm1.large', count: 2, minCount: 1, maxCount: 10 }],
  })
  // Templates per Kubernetes minor, as Magnum's are: 1.32 is where the GPU cluster upgrades to.
  await aKubernetesVersion(stack.db, '1.32.1')
  for (const [name, kubernetesVersion] of [
    ['k8s-1.31-gpu', '1.31.4'],
    ['k8s-1.32-gpu', '1.32.1'],
  ]) {
    await aTemplate(stack.db, backend.id, {
      name,
      kubernetesVersion,
      features: { gpu: { enabled: true } },
      lockedFeatures: ['gpu'],
      nodeGroups: [
        { name: 'workers', machineClass: 'm1.large', count: 1, minCount: 1, maxCount: 10 },
        { name: 'gpu', machineClass: 'gpu.a100x4', count: 1, minCount: 0, maxCount: 2 },
      ],
    })
  }
  const teamA = await stack.db.project.findUniqueOrThrow({ where: { name: 'team-a' } })
  const secret = await stack.db.project.create({ data: { name: 'secret', displayName: 'secret' } })
  for (const [name, role] of [
    ['kiln:demo-admins', 'admin'],
    ['kiln:demo-viewers', 'viewer'],
  ] as const) {
    await stack.db.projectMember.create({
      data: { projectId: teamA.id, kind: 'group', name, role, createdBy: 'test' },
    })
  }
  await stack.app.listen({ host: '127.0.0.1', port })

  // A cluster the viewer can look at, and one in a project the demo user cannot see.
  const admin = await userAccessToken({
    issuer: issuer.issuer,
    audience: settings.audience,
    username: 'admin',
    password: 'admin',
  })
  for (const [project, name] of [
    ['team-a', 'shared'],
    [secret.name, 'hidden'],
  ]) {
    const res = await fetch(`${apiUrl}/v1/projects/${project}/clusters`, {
      method: 'POST',
      headers: { authorization: `Bearer ${admin.accessToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name, template: 'k8s-1.31' }),
    })
    expect(res.status, await res.clone().text()).toBe(202)
  }
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox'],
  })
})

afterAll(async () => {
  await browser?.close()
  await stack?.close()
  await issuer?.close()
  await rm(dir, { recursive: true, force: true })
})

/** A browser session logged in through the issuer's login form. */
async function loggedIn(username: string): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1440, height: 900 } })
  const page = await context.newPage()
  page.on('console', (message) => {
    // Chromium logs every 4xx/5xx answer as "Failed to load resource"; the portal meets some on
    // purpose (401 before login, the 404 of a cluster in another project). Those are network logs,
    // not the app's errors; anything the app itself logs or throws still counts.
    if (message.text().startsWith('Failed to load resource:')) return
    if (message.type() === 'error' || message.type() === 'warning')
      consoleErrors.push(`${username}: ${message.type()}: ${message.text()}`)
  })
  page.on('pageerror', (error) => consoleErrors.push(`${username}: ${error.message}`))
  await page.goto(`${apiUrl}/portal/`)
  await page.getByRole('link', { name: 'Log in' }).click()
  await page.getByLabel('Username').fill(username)
  await page.getByLabel('Password').fill(username)
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.waitForURL(/\/portal\/projects\/team-a\/clusters/)
  return { context, page }
}

const phase = (page: Page) => page.getByTestId('cluster-phase')

/** Waits until the operation panel shows an operation of `kind` that succeeded. */
const finished = (page: Page, kind: string) =>
  page
    .getByRole('region', { name: 'Operation progress' })
    .filter({ hasText: new RegExp(`${kind.replace('.', '\\.')}\\s+succeeded`) })
    .waitFor({ timeout: 60_000 })

// A whole create → Ready → change → delete in a real browser: its waits are up to 60 s each, so the
// test as a whole gets more than vitest's default 30 s (it took 48 s on a busy two-core machine).
describe('the portal', { timeout: 180_000 }, () => {
  it('logs in, creates a GPU cluster with traefik, watches it to Ready, changes monitoring, hands out a kubeconfig, deletes it', async () => {
    const { context, page } = await loggedIn('demo')
    await page.getByRole('heading', { name: 'Clusters', level: 1 }).waitFor()
    await page.screenshot({ path: join(shots, 'clusters.png'), fullPage: true })

    await page.getByRole('link', { name: 'Templates' }).click()
    await page.getByRole('heading', { name: 'Templates', level: 1 }).waitFor()
    await page.screenshot({ path: join(shots, 'templates.png'), fullPage: true })

    await page.goto(`${apiUrl}/portal/projects/team-a/clusters`)
    await page.getByRole('link', { name: 'Create cluster' }).click()
    // The API's field errors are shown next to the field they name, and the field is marked invalid.
    const nameField = page.getByLabel('Name', { exact: true })
    await nameField.fill('Not_A_Name')
    await page.getByLabel('Template', { exact: true }).selectOption('k8s-1.31-gpu')
    await page.getByRole('button', { name: 'Create', exact: true }).click()
    await page.getByRole('alert').first().waitFor()
    expect(await nameField.getAttribute('aria-invalid')).toBe('true')
    const described = await nameField.getAttribute('aria-describedby')
    expect(await page.locator(`[id="${described}"]`).textContent()).toMatch(/\S/)
    await nameField.fill('gpu-1')
    await page.getByLabel('Template', { exact: true }).selectOption('k8s-1.31-gpu')
    await page.getByLabel('ingress.controller').selectOption('traefik')
    // Bigger workers than the template's, from the backend's machine classes.
    await page.getByLabel('workers machine class').selectOption('m1.xlarge')
    await page.getByRole('button', { name: 'Preview' }).click()
    await page.getByRole('heading', { name: 'Preview' }).waitFor()
    await page.screenshot({ path: join(shots, 'create.png'), fullPage: true })
    await page.getByRole('button', { name: 'Create', exact: true }).click()

    await page.waitForURL(/\/clusters\/gpu-1/)
    const workers = await stack.db.nodeGroup.findFirstOrThrow({
      where: { name: 'workers', cluster: { name: 'gpu-1' } },
    })
    expect(workers.machineClass).toBe('m1.xlarge')
    await page.getByRole('region', { name: 'Operation progress' }).waitFor()
    await page.screenshot({ path: join(shots, 'progress.png'), fullPage: true })
    await phase(page)
      .filter({ hasText: /^Ready$/ })
      .waitFor({ timeout: 60_000 })
    await page.screenshot({ path: join(shots, 'cluster.png'), fullPage: true })

    // Resize from the cluster page; the keyboard alone submits it.
    await page.getByLabel('workers size').fill('2')
    await page.getByLabel('workers size').press('Enter')
    // The phase shown may still be the last one while an operation starts: wait for the operation itself.
    await finished(page, 'nodegroup.resize')
    await phase(page)
      .filter({ hasText: /^Ready$/ })
      .waitFor({ timeout: 60_000 })
    expect(await stack.db.machine.count({ where: { cluster: { name: 'gpu-1' }, role: 'worker' } })).toBe(3)

    await page.getByLabel('monitoring.enabled').check()
    await page.getByRole('button', { name: 'Apply features' }).click()
    await finished(page, 'cluster.update-features')
    await phase(page)
      .filter({ hasText: /^Ready$/ })
      .waitFor({ timeout: 60_000 })
    const demo = await userAccessToken({
      issuer: issuer.issuer,
      audience: 'urn:kiln:api',
      username: 'demo',
      password: 'demo',
    })
    const effective = await stack.app.inject({
      method: 'GET',
      url: '/v1/projects/team-a/clusters/gpu-1',
      headers: { authorization: `Bearer ${demo.accessToken}` },
    })
    expect(
      (effective.json() as { spec: { features: Record<string, Record<string, unknown>> } }).spec.features,
    ).toMatchObject({
      monitoring: { enabled: true },
      ingress: { controller: 'traefik' },
      gpu: { enabled: true },
    })

    // Upgrade to what the API offers: the next minor version's template, a rolling replacement.
    await page.getByLabel('Upgrade to').selectOption({ label: 'k8s-1.32-gpu@1 (Kubernetes 1.32.1)' })
    await page.getByRole('button', { name: 'Upgrade', exact: true }).click()
    await finished(page, 'cluster.upgrade')
    await phase(page)
      .filter({ hasText: /^Ready$/ })
      .waitFor({ timeout: 60_000 })
    await page.getByText('Up to date').waitFor()
    await page.screenshot({ path: join(shots, 'upgraded.png'), fullPage: true })

    await page.getByLabel('Kubeconfig lifetime').selectOption('3600')
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('button', { name: 'Download kubeconfig' }).click(),
    ])
    expect(download.suggestedFilename()).toBe('gpu-1.kubeconfig')
    const kubeconfig = join(dir, 'gpu-1.kubeconfig')
    await download.saveAs(kubeconfig)
    const { stdout } = await run('kubectl', [
      '--kubeconfig',
      kubeconfig,
      '--cache-dir',
      join(dir, 'kube'),
      'get',
      'nodes',
      '-o',
      'name',
    ])
    expect(stdout.trim().split('\n')).toHaveLength(4)
    const version = await run('kubectl', [
      '--kubeconfig',
      kubeconfig,
      '--cache-dir',
      join(dir, 'kube'),
      'version',
      '-o',
      'json',
    ])
    expect(JSON.parse(version.stdout).serverVersion.gitVersion).toBe('v1.32.1')

    // A create that fails: its classified error, and a Retry for people who may run it again.
    await page.goto(`${apiUrl}/portal/projects/team-a/clusters/new`)
    await page.getByLabel('Name', { exact: true }).fill('gpu-2')
    await page.getByLabel('Template', { exact: true }).selectOption('k8s-1.31-gpu')
    await page.getByLabel('gpu nodes').fill('2')
    await page.getByRole('button', { name: 'Create', exact: true }).click()
    await page.waitForURL(/\/clusters\/gpu-2/)
    const failure = page.getByRole('region', { name: 'Operation progress' }).getByRole('alert')
    await failure.filter({ hasText: 'ERR_CAPACITY' }).waitFor({ timeout: 30_000 })
    expect(await failure.textContent()).toContain('platform')
    expect(await page.getByRole('button', { name: 'Retry' }).count()).toBe(1)
    await page.screenshot({ path: join(shots, 'failed.png'), fullPage: true })

    await page.getByRole('link', { name: 'Audit' }).click()
    await page.getByRole('heading', { name: 'Audit log', level: 1 }).waitFor()
    await page.getByRole('cell', { name: 'cluster.create.failed' }).first().waitFor()
    await page.screenshot({ path: join(shots, 'audit.png'), fullPage: true })

    // Members: add a person, change their role, and meet the API's refusal to lose the last admin.
    const teamA = await stack.db.project.findUniqueOrThrow({ where: { name: 'team-a' } })
    const roleOf = async (name: string) =>
      (await stack.db.projectMember.findFirst({ where: { projectId: teamA.id, name } }))?.role
    await page.getByRole('link', { name: 'Members' }).click()
    await page.getByRole('heading', { name: 'Members', level: 1 }).waitFor()
    await page.getByLabel('Kind').selectOption('user')
    await page.getByLabel('Member name').fill('carol')
    await page.getByLabel('Member role').selectOption('viewer')
    await page.getByRole('button', { name: 'Add', exact: true }).click()
    await page.getByLabel('Role of carol').waitFor()
    expect(await roleOf('carol')).toBe('viewer')
    await page.getByLabel('Role of carol').selectOption('member')
    await expect.poll(() => roleOf('carol')).toBe('member')
    await page.getByLabel('Role of kiln:demo-admins').selectOption('viewer')
    await page.getByRole('alert').filter({ hasText: 'last admin' }).waitFor()
    expect(await roleOf('kiln:demo-admins')).toBe('admin')
    expect(await page.getByLabel('Role of kiln:demo-admins').inputValue()).toBe('admin')
    await page.screenshot({ path: join(shots, 'members.png'), fullPage: true })
    await page.getByRole('button', { name: 'Remove carol' }).click()
    await page.getByLabel('Role of carol').waitFor({ state: 'detached' })
    expect(await roleOf('carol')).toBeUndefined()

    await page.goto(`${apiUrl}/portal/projects/team-a/clusters/gpu-1`)
    await page.getByRole('button', { name: 'Delete cluster' }).click()
    const confirm = page.getByRole('button', { name: 'Delete', exact: true })
    expect(await confirm.isDisabled()).toBe(true)
    await page.getByLabel('Type the cluster name to confirm').fill('gpu-1')
    await confirm.click()
    await page.waitForURL(/\/projects\/team-a\/clusters$/, { timeout: 60_000 })
    expect(await stack.db.cluster.count({ where: { name: 'gpu-1' } })).toBe(0)
    await context.close()
  })

  it('shows a viewer no mutating control, and another project’s cluster as Not found', async () => {
    const { context, page } = await loggedIn('viewer')
    await page.getByRole('link', { name: 'shared' }).waitFor()
    // Filters: the list asks the API for the phase chosen.
    await page.getByLabel('Phase').selectOption('Deleting')
    await page.getByRole('link', { name: 'shared' }).waitFor({ state: 'detached' })
    await page.getByLabel('Phase').selectOption('Ready')
    await page.getByRole('link', { name: 'shared' }).waitFor()
    expect(await page.getByRole('link', { name: 'Create cluster' }).count()).toBe(0)
    await page.getByRole('link', { name: 'shared' }).click()
    await page.getByRole('heading', { name: 'shared', level: 1 }).waitFor()
    for (const name of ['Delete cluster', 'Resize', 'Apply features', 'Upgrade', 'Retry'])
      expect(await page.getByRole('button', { name }).count(), name).toBe(0)
    expect(await page.getByRole('button', { name: 'Download kubeconfig' }).count()).toBe(1)
    await page.screenshot({ path: join(shots, 'viewer.png'), fullPage: true })
    // The members list, read only.
    await page.getByRole('link', { name: 'Members' }).click()
    await page.getByRole('cell', { name: 'kiln:demo-viewers' }).waitFor()
    expect(await page.getByRole('main').getByRole('combobox').count()).toBe(0)
    for (const name of ['Add', 'Remove kiln:demo-admins'])
      expect(await page.getByRole('button', { name }).count(), name).toBe(0)

    await page.goto(`${apiUrl}/portal/projects/secret/clusters/hidden`)
    await page.getByRole('heading', { name: 'Not found', level: 1 }).waitFor()
    await page.screenshot({ path: join(shots, 'not-found.png'), fullPage: true })
    await context.close()
  })

  it('shows a cluster whose change was cancelled as not converged, naming what is missing', async () => {
    const shared = async () => stack.db.cluster.findFirstOrThrow({ where: { name: 'shared' } })
    for (let i = 0; i < 600 && (await shared()).activeOperationId; i++)
      await new Promise((r) => setTimeout(r, 100))
    // Cancelled before any worker took it: the worker is stopped meanwhile.
    await stack.stopEngine()
    try {
      const { context, page } = await loggedIn('demo')
      const resize = await page.evaluate(async () => {
        const res = await fetch('/v1/projects/team-a/clusters/shared/nodegroups/workers/resize', {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-requested-with': 'kiln-portal' },
          body: JSON.stringify({ count: 3 }),
        })
        return { status: res.status, body: (await res.json()) as { id: string } }
      })
      expect(resize.status, JSON.stringify(resize.body)).toBe(202)
      const cancelled = await page.evaluate(
        async (id) =>
          (
            await fetch(`/v1/operations/${id}/cancel`, {
              method: 'POST',
              headers: { 'x-requested-with': 'kiln-portal' },
            })
          ).status,
        resize.body.id,
      )
      expect(cancelled).toBe(200)
      await page.goto(`${apiUrl}/portal/projects/team-a/clusters/shared`)
      const banner = page.getByTestId('not-converged')
      await banner.waitFor()
      expect(await banner.textContent()).toContain('node group workers: 3 desired, 2 built')
      expect(await phase(page).textContent()).not.toBe('Ready')
      await page.screenshot({ path: join(shots, 'not-converged.png'), fullPage: true })
      await context.close()
    } finally {
      await stack.startEngine()
    }
  })

  it('fits a laptop and a wide screen without scrolling sideways', async () => {
    const { context, page } = await loggedIn('demo')
    const pages = [
      ['clusters', '/portal/projects/team-a/clusters'],
      ['cluster', '/portal/projects/team-a/clusters/shared'],
      ['create', '/portal/projects/team-a/clusters/new'],
      ['templates', '/portal/projects/team-a/templates'],
      ['members', '/portal/projects/team-a/members'],
    ] as const
    for (const [screen, width, height] of [
      ['laptop', 1280, 720],
      ['wide', 2560, 1440],
    ] as const) {
      await page.setViewportSize({ width, height })
      for (const [name, path] of pages) {
        await page.goto(`${apiUrl}${path}`)
        await page.getByRole('heading', { level: 1 }).waitFor()
        // Counted by Playwright's selectors: a waitForFunction predicate would be eval'd in the page,
        // which the portal's CSP forbids (and then logs a console error).
        await expect.poll(() => page.getByText('Loading…').count()).toBe(0)
        // (strings: these run in the page, which the tests' TypeScript has no DOM types for)
        const overflow = await page.evaluate<number>(
          'document.documentElement.scrollWidth - window.innerWidth',
        )
        expect(overflow, `${name} at ${width}×${height} scrolls sideways`).toBeLessThanOrEqual(0)
        await page.screenshot({ path: join(shots, `${name}-${screen}.png`), fullPage: true })
      }
    }
    await context.close()
  })

  it('logged no console errors or warnings on any page', () => {
    expect(consoleErrors).toEqual([])
  })
})

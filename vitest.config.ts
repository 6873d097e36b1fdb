import { defineConfig } from 'vitest/config'

// Two projects, run one after the other by scripts/test.sh: `main` runs files in parallel;
// `reliability` kills workers, flushes Redis and restarts PostgreSQL, so it runs alone, file by file.
export default defineConfig({
  test: {
    globalSetup: ['test/support/global-setup.ts'],
    pool: 'forks',
    // The API and worker processes tests start would all serve /metrics on the same default ports
    // (9464, 9465), and each API would fork one process per core; a test that scrapes one, or runs the
    // API on several processes, says so itself.
    env: { KILN_METRICS_PORT: '0', KILN_API_PROCESSES: '1' },
    testTimeout: 30_000,
    // Starting a stack (a database clone, the API, an engine, sometimes Ironic nodes) takes seconds
    // alone and minutes on a machine shared by many test runs; a hook is no race against the clock.
    hookTimeout: 180_000,
    projects: [
      {
        extends: true,
        test: {
          name: 'main',
          include: ['{apps,packages}/*/test/**/*.test.ts', 'test/**/*.test.ts'],
          exclude: ['test/reliability/**'],
        },
      },
      {
        extends: true,
        test: {
          name: 'reliability',
          include: ['test/reliability/**/*.test.ts'],
          fileParallelism: false,
          testTimeout: 600_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
})

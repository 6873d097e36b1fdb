import { defineConfig } from 'vitest/config'

// Two projects, run one after the other by scripts/test.sh: `main` runs files in parallel;
// `reliability` kills workers, flushes Redis and restarts PostgreSQL, so it runs alone, file by file.
export default defineConfig({
  test: {
    globalSetup: ['test/support/global-setup.ts'],
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 60_000,
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

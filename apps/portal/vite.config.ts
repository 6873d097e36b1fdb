import { defineConfig } from 'vite'

// The portal is served by the API under /portal/ (apps/api serves dist/); in development Vite serves
// it and forwards the API's paths to the API, so the session cookie stays same-origin either way.
const api = process.env.KILN_API_URL ?? 'http://127.0.0.1:8080'

export default defineConfig({
  base: '/portal/',
  build: { outDir: 'dist', emptyOutDir: true, sourcemap: true },
  server: { port: 5173, proxy: { '/v1': api, '/healthz': api } },
})

# One image for the API and the worker (the command picks which).
FROM node:20-bookworm-slim
WORKDIR /app
COPY package.json package-lock.json ./
COPY apps/api/package.json apps/api/
COPY apps/worker/package.json apps/worker/
COPY packages/domain/package.json packages/domain/
COPY packages/db/package.json packages/db/
COPY packages/client/package.json packages/client/
RUN npm ci --no-audit --no-fund
COPY . .
RUN PRISMA_SCHEMA_ENGINE_BINARY=prisma/engine/schema-engine.mjs npx prisma generate
ENV HOST=0.0.0.0 PORT=8080 PRISMA_SCHEMA_ENGINE_BINARY=/app/prisma/engine/schema-engine.mjs
EXPOSE 8080
CMD ["npx", "tsx", "apps/api/src/main.ts"]

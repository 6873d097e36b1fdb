-- The health checker remembers what it saw per machine, so repair acts only on evidence held for a
-- grace period and a backend that does not answer leaves a machine Unknown, never Unhealthy.
ALTER TABLE "Machine" ADD COLUMN "health" TEXT,
ADD COLUMN "healthReason" TEXT,
ADD COLUMN "unhealthySince" TIMESTAMPTZ(3),
ADD COLUMN "observedAt" TIMESTAMPTZ(3);

-- AlterTable
ALTER TABLE "Machine" ADD COLUMN     "kubernetesVersion" TEXT NOT NULL DEFAULT '',
ADD COLUMN     "ordinal" INTEGER NOT NULL DEFAULT 0;

-- AlterTable
ALTER TABLE "Operation" ADD COLUMN     "attempts" INTEGER NOT NULL DEFAULT 0,
ADD COLUMN     "enqueuedAt" TIMESTAMPTZ(3),
ADD COLUMN     "leaseOwner" TEXT,
ADD COLUMN     "leaseUntil" TIMESTAMPTZ(3);

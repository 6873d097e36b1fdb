-- AlterTable
ALTER TABLE "ClusterSecret" DROP CONSTRAINT "ClusterSecret_pkey",
ADD COLUMN     "generation" INTEGER NOT NULL DEFAULT 1,
ADD CONSTRAINT "ClusterSecret_pkey" PRIMARY KEY ("clusterId", "purpose", "generation");

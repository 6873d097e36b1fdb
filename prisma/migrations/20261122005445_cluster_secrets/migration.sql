-- CreateTable
CREATE TABLE "ClusterSecret" (
    "clusterId" UUID NOT NULL,
    "purpose" TEXT NOT NULL,
    "kind" TEXT NOT NULL,
    "publicPem" TEXT NOT NULL,
    "sealedKey" JSONB NOT NULL,
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "ClusterSecret_pkey" PRIMARY KEY ("clusterId","purpose")
);

-- AddForeignKey
ALTER TABLE "ClusterSecret" ADD CONSTRAINT "ClusterSecret_clusterId_fkey" FOREIGN KEY ("clusterId") REFERENCES "Cluster"("id") ON DELETE CASCADE ON UPDATE CASCADE;

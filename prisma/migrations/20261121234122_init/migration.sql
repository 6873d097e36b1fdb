-- CreateEnum
CREATE TYPE "BackendKind" AS ENUM ('simulator', 'ironic', 'capi');

-- CreateEnum
CREATE TYPE "VersionLifecycle" AS ENUM ('supported', 'deprecated', 'expired');

-- CreateEnum
CREATE TYPE "NodeGroupRole" AS ENUM ('worker', 'ingress', 'infra');

-- CreateEnum
CREATE TYPE "OperationStatus" AS ENUM ('pending', 'running', 'succeeded', 'failed', 'cancelled');

-- CreateTable
CREATE TABLE "Project" (
    "id" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "displayName" TEXT NOT NULL,
    "labels" JSONB NOT NULL DEFAULT '{}',
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "Project_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "Backend" (
    "id" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "kind" "BackendKind" NOT NULL,
    "config" JSONB NOT NULL DEFAULT '{}',
    "capabilities" JSONB NOT NULL DEFAULT '{}',
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "Backend_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "MachineClass" (
    "id" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "backendId" UUID NOT NULL,
    "cpu" INTEGER NOT NULL,
    "memoryMiB" INTEGER NOT NULL,
    "gpuModel" TEXT,
    "gpuCount" INTEGER NOT NULL DEFAULT 0,
    "zones" TEXT[],
    "description" TEXT NOT NULL DEFAULT '',
    "labels" JSONB NOT NULL DEFAULT '{}',
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "MachineClass_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "KubernetesVersion" (
    "version" TEXT NOT NULL,
    "lifecycle" "VersionLifecycle" NOT NULL DEFAULT 'supported',
    "releasedAt" DATE,
    "endOfLifeAt" DATE,
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMPTZ(3) NOT NULL,
    "revision" INTEGER NOT NULL DEFAULT 1,

    CONSTRAINT "KubernetesVersion_pkey" PRIMARY KEY ("version")
);

-- CreateTable
CREATE TABLE "ClusterTemplate" (
    "id" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "version" INTEGER NOT NULL,
    "projectId" UUID,
    "description" TEXT NOT NULL DEFAULT '',
    "kubernetesVersion" TEXT NOT NULL,
    "backendId" UUID NOT NULL,
    "controlPlane" JSONB NOT NULL,
    "nodeGroups" JSONB NOT NULL,
    "features" JSONB NOT NULL DEFAULT '{}',
    "lockedFeatures" TEXT[],
    "labels" JSONB NOT NULL DEFAULT '{}',
    "deprecated" BOOLEAN NOT NULL DEFAULT false,
    "revision" INTEGER NOT NULL DEFAULT 1,
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "ClusterTemplate_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "Cluster" (
    "id" UUID NOT NULL,
    "projectId" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "templateId" UUID NOT NULL,
    "request" JSONB NOT NULL,
    "spec" JSONB NOT NULL,
    "status" JSONB NOT NULL,
    "labels" JSONB NOT NULL DEFAULT '{}',
    "generation" INTEGER NOT NULL DEFAULT 1,
    "revision" INTEGER NOT NULL DEFAULT 1,
    "activeOperationId" UUID,
    "deletionRequested" BOOLEAN NOT NULL DEFAULT false,
    "expiresAt" TIMESTAMPTZ(3),
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "Cluster_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "NodeGroup" (
    "id" UUID NOT NULL,
    "clusterId" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "role" "NodeGroupRole" NOT NULL DEFAULT 'worker',
    "machineClass" TEXT NOT NULL,
    "count" INTEGER NOT NULL,
    "minCount" INTEGER NOT NULL,
    "maxCount" INTEGER NOT NULL,
    "zones" TEXT[],
    "labels" JSONB NOT NULL DEFAULT '{}',
    "taints" JSONB NOT NULL DEFAULT '[]',
    "maxSurge" INTEGER NOT NULL DEFAULT 1,
    "maxUnavailable" INTEGER NOT NULL DEFAULT 0,
    "features" JSONB NOT NULL DEFAULT '{}',
    "provenance" JSONB NOT NULL DEFAULT '{}',
    "status" JSONB NOT NULL DEFAULT '{}',
    "generation" INTEGER NOT NULL DEFAULT 1,
    "revision" INTEGER NOT NULL DEFAULT 1,
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "NodeGroup_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "Machine" (
    "id" UUID NOT NULL,
    "clusterId" UUID NOT NULL,
    "nodeGroupId" UUID,
    "name" TEXT NOT NULL,
    "role" TEXT NOT NULL,
    "machineClass" TEXT NOT NULL,
    "zone" TEXT,
    "externalId" TEXT,
    "phase" TEXT NOT NULL DEFAULT 'Pending',
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "Machine_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "Operation" (
    "id" UUID NOT NULL,
    "kind" TEXT NOT NULL,
    "status" "OperationStatus" NOT NULL DEFAULT 'pending',
    "progress" INTEGER NOT NULL DEFAULT 0,
    "steps" JSONB NOT NULL DEFAULT '[]',
    "error" JSONB,
    "projectId" UUID NOT NULL,
    "clusterId" UUID,
    "resource" JSONB NOT NULL,
    "params" JSONB NOT NULL DEFAULT '{}',
    "requestedBy" TEXT NOT NULL,
    "cancelRequested" BOOLEAN NOT NULL DEFAULT false,
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "startedAt" TIMESTAMPTZ(3),
    "finishedAt" TIMESTAMPTZ(3),
    "updatedAt" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "Operation_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "AuditEvent" (
    "id" BIGSERIAL NOT NULL,
    "projectId" UUID,
    "actor" TEXT NOT NULL,
    "action" TEXT NOT NULL,
    "targetKind" TEXT NOT NULL,
    "targetId" TEXT NOT NULL,
    "requestId" TEXT NOT NULL,
    "data" JSONB NOT NULL DEFAULT '{}',
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "AuditEvent_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "IdempotencyRecord" (
    "principal" TEXT NOT NULL,
    "key" TEXT NOT NULL,
    "requestHash" TEXT NOT NULL,
    "statusCode" INTEGER NOT NULL,
    "body" JSONB,
    "headers" JSONB NOT NULL DEFAULT '{}',
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "expiresAt" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "IdempotencyRecord_pkey" PRIMARY KEY ("principal","key")
);

-- CreateIndex
CREATE UNIQUE INDEX "Project_name_key" ON "Project"("name");

-- CreateIndex
CREATE UNIQUE INDEX "Backend_name_key" ON "Backend"("name");

-- CreateIndex
CREATE UNIQUE INDEX "MachineClass_name_key" ON "MachineClass"("name");

-- CreateIndex
CREATE INDEX "ClusterTemplate_projectId_idx" ON "ClusterTemplate"("projectId");

-- CreateIndex
CREATE UNIQUE INDEX "ClusterTemplate_name_version_key" ON "ClusterTemplate"("name", "version");

-- CreateIndex
CREATE UNIQUE INDEX "Cluster_activeOperationId_key" ON "Cluster"("activeOperationId");

-- CreateIndex
CREATE INDEX "Cluster_projectId_createdAt_id_idx" ON "Cluster"("projectId", "createdAt", "id");

-- CreateIndex
CREATE UNIQUE INDEX "Cluster_projectId_name_key" ON "Cluster"("projectId", "name");

-- CreateIndex
CREATE UNIQUE INDEX "NodeGroup_clusterId_name_key" ON "NodeGroup"("clusterId", "name");

-- CreateIndex
CREATE UNIQUE INDEX "Machine_name_key" ON "Machine"("name");

-- CreateIndex
CREATE INDEX "Machine_clusterId_idx" ON "Machine"("clusterId");

-- CreateIndex
CREATE INDEX "Operation_projectId_createdAt_id_idx" ON "Operation"("projectId", "createdAt", "id");

-- CreateIndex
CREATE INDEX "Operation_clusterId_createdAt_idx" ON "Operation"("clusterId", "createdAt");

-- CreateIndex
CREATE INDEX "Operation_status_idx" ON "Operation"("status");

-- CreateIndex
CREATE INDEX "AuditEvent_projectId_createdAt_idx" ON "AuditEvent"("projectId", "createdAt");

-- CreateIndex
CREATE INDEX "AuditEvent_targetKind_targetId_idx" ON "AuditEvent"("targetKind", "targetId");

-- CreateIndex
CREATE INDEX "IdempotencyRecord_expiresAt_idx" ON "IdempotencyRecord"("expiresAt");

-- AddForeignKey
ALTER TABLE "MachineClass" ADD CONSTRAINT "MachineClass_backendId_fkey" FOREIGN KEY ("backendId") REFERENCES "Backend"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "ClusterTemplate" ADD CONSTRAINT "ClusterTemplate_projectId_fkey" FOREIGN KEY ("projectId") REFERENCES "Project"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "ClusterTemplate" ADD CONSTRAINT "ClusterTemplate_kubernetesVersion_fkey" FOREIGN KEY ("kubernetesVersion") REFERENCES "KubernetesVersion"("version") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "ClusterTemplate" ADD CONSTRAINT "ClusterTemplate_backendId_fkey" FOREIGN KEY ("backendId") REFERENCES "Backend"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Cluster" ADD CONSTRAINT "Cluster_projectId_fkey" FOREIGN KEY ("projectId") REFERENCES "Project"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Cluster" ADD CONSTRAINT "Cluster_templateId_fkey" FOREIGN KEY ("templateId") REFERENCES "ClusterTemplate"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "NodeGroup" ADD CONSTRAINT "NodeGroup_clusterId_fkey" FOREIGN KEY ("clusterId") REFERENCES "Cluster"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Machine" ADD CONSTRAINT "Machine_clusterId_fkey" FOREIGN KEY ("clusterId") REFERENCES "Cluster"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Machine" ADD CONSTRAINT "Machine_nodeGroupId_fkey" FOREIGN KEY ("nodeGroupId") REFERENCES "NodeGroup"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Operation" ADD CONSTRAINT "Operation_projectId_fkey" FOREIGN KEY ("projectId") REFERENCES "Project"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Operation" ADD CONSTRAINT "Operation_clusterId_fkey" FOREIGN KEY ("clusterId") REFERENCES "Cluster"("id") ON DELETE SET NULL ON UPDATE CASCADE;

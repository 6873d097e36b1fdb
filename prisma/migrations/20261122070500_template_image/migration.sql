-- AlterTable
ALTER TABLE "ClusterTemplate" ADD COLUMN     "image" JSONB;

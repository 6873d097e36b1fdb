-- The cluster list's label selector (?label=k=v) is a containment, labels @> '{"k":"v"}'; without
-- this index it read every cluster of the project.
CREATE INDEX "Cluster_labels_idx" ON "Cluster" USING GIN ("labels" jsonb_path_ops);

-- An operation remembers the request that started it: its request id for the worker's logs and the
-- W3C traceparent of the request's span, so every run attempt (even one the dispatcher re-queued
-- after Redis lost the job) joins the request's trace.
ALTER TABLE "Operation" ADD COLUMN "requestId" TEXT,
ADD COLUMN "traceparent" TEXT;

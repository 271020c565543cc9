-- Create "auth_attempts" table
CREATE TABLE "auth_attempts" ("id" text NOT NULL, "email" text NOT NULL, "ip" text NULL, "failuresCount" integer NOT NULL DEFAULT 0, "lockedUntil" timestamp(3) NULL, "lastAttemptAt" timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP, "createdAt" timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP, "updatedAt" timestamp(3) NOT NULL, PRIMARY KEY ("id"));
-- Create index "auth_attempts_email_idx" to table: "auth_attempts"
CREATE INDEX "auth_attempts_email_idx" ON "auth_attempts" ("email");
-- Create index "auth_attempts_email_ip_key" to table: "auth_attempts"
CREATE UNIQUE INDEX "auth_attempts_email_ip_key" ON "auth_attempts" ("email", "ip");
-- Create index "auth_attempts_ip_idx" to table: "auth_attempts"
CREATE INDEX "auth_attempts_ip_idx" ON "auth_attempts" ("ip");
-- Create index "auth_attempts_lockedUntil_idx" to table: "auth_attempts"
CREATE INDEX "auth_attempts_lockedUntil_idx" ON "auth_attempts" ("lockedUntil");
-- Create "idempotency_records" table
CREATE TABLE "idempotency_records" ("id" text NOT NULL, "key" text NOT NULL, "route" text NOT NULL, "requestHash" text NOT NULL, "responseStatus" integer NOT NULL, "responseBodyJson" text NOT NULL, "createdAt" timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP, "expiresAt" timestamp(3) NOT NULL, "organizationId" text NULL, "ip" text NULL, PRIMARY KEY ("id"));
-- Create index "idempotency_records_expiresAt_idx" to table: "idempotency_records"
CREATE INDEX "idempotency_records_expiresAt_idx" ON "idempotency_records" ("expiresAt");
-- Create index "idempotency_records_key_route_key" to table: "idempotency_records"
CREATE UNIQUE INDEX "idempotency_records_key_route_key" ON "idempotency_records" ("key", "route");
-- Create index "idempotency_records_organizationId_idx" to table: "idempotency_records"
CREATE INDEX "idempotency_records_organizationId_idx" ON "idempotency_records" ("organizationId");

-- The platform's schema: the design's section 3.1, with what docs/database.md lists under "Migration 1".
-- Released: never edit this file (tests/unit/test_migrations.py pins its hash); add a new migration instead.
-- It runs as the owner role, in one transaction, and every name is schema-qualified: the migrator's
-- search_path is the migration library's own schema.

CREATE SCHEMA IF NOT EXISTS sandbox;

-- Every table with an updated_at keeps it current itself, whoever writes the row.
CREATE FUNCTION sandbox.set_updated_at() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

CREATE TABLE sandbox.clients (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name VARCHAR(255) NOT NULL CHECK (name <> ''),
    kubernetes_namespace VARCHAR(63) NOT NULL UNIQUE
        CHECK (kubernetes_namespace ~ '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'),
    resource_quota JSONB NOT NULL DEFAULT '{}',
    state VARCHAR(16) NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'archived')),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE sandbox.freelancers (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    email VARCHAR(255) NOT NULL CHECK (email LIKE '%_@_%'),
    display_name VARCHAR(255),
    state VARCHAR(16) NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'archived')),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- One active freelancer per address, whatever its case (the roster's rule). An archived row keeps its
    -- address, so someone re-onboarded under a new id is not refused; deferred, so two freelancers can
    -- swap addresses in one roster change.
    CONSTRAINT freelancers_active_email_unique
        EXCLUDE USING btree (lower(email) WITH =) WHERE (state = 'active') DEFERRABLE INITIALLY DEFERRED
);

CREATE TABLE sandbox.sandbox_configs (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    freelancer_id UUID NOT NULL REFERENCES sandbox.freelancers (id) ON DELETE RESTRICT,
    client_id UUID NOT NULL REFERENCES sandbox.clients (id) ON DELETE RESTRICT,
    resource_tier VARCHAR(16) NOT NULL CHECK (resource_tier IN ('basic', 'standard', 'premium', 'custom')),
    gpu BOOLEAN NOT NULL DEFAULT false,
    -- The roster's per-user image, TAG@sha256:DIGEST, in its two parts (the digest is optional there).
    custom_image_tag VARCHAR(128) CHECK (custom_image_tag ~ '^[A-Za-z0-9_][A-Za-z0-9_.-]*$'),
    custom_image_digest VARCHAR(71) CHECK (custom_image_digest ~ '^sha256:[0-9a-f]{64}$'),
    pvc_workspace VARCHAR(63) NOT NULL,
    pvc_home VARCHAR(63) NOT NULL,
    workspace_storage_bytes BIGINT NOT NULL CHECK (workspace_storage_bytes > 0),
    home_storage_bytes BIGINT NOT NULL CHECK (home_storage_bytes > 0),
    state VARCHAR(16) NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'suspended', 'archived')),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT sandbox_configs_digest_has_tag CHECK (custom_image_digest IS NULL OR custom_image_tag IS NOT NULL),
    -- One sandbox per freelancer and client (the roster's rule); sessions refer to the pair.
    CONSTRAINT sandbox_configs_freelancer_client_key UNIQUE (freelancer_id, client_id)
);

CREATE TABLE sandbox.sessions (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    freelancer_id UUID NOT NULL REFERENCES sandbox.freelancers (id) ON DELETE RESTRICT,
    client_id UUID NOT NULL REFERENCES sandbox.clients (id) ON DELETE RESTRICT,
    pod_name VARCHAR(255),
    namespace VARCHAR(63),
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    ended_at TIMESTAMPTZ CHECK (ended_at >= started_at),
    api_key_secret_ref VARCHAR(255), -- the Kubernetes Secret's name, never the key
    resource_usage JSONB,
    status VARCHAR(50) NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'ended', 'failed')),
    -- A session belongs to a sandbox the roster declared.
    CONSTRAINT sessions_sandbox_fkey FOREIGN KEY (freelancer_id, client_id)
        REFERENCES sandbox.sandbox_configs (freelancer_id, client_id) ON DELETE RESTRICT
);

CREATE TABLE sandbox.usage_tracking (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Usage events are part of their session: purging a session purges them.
    session_id UUID NOT NULL REFERENCES sandbox.sessions (id) ON DELETE CASCADE,
    "timestamp" TIMESTAMPTZ NOT NULL DEFAULT now(),
    event_type VARCHAR(50) NOT NULL,
    prompt_tokens INTEGER CHECK (prompt_tokens >= 0),
    completion_tokens INTEGER CHECK (completion_tokens >= 0),
    command TEXT,
    metadata JSONB
);

CREATE TABLE sandbox.package_installations (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    freelancer_id UUID NOT NULL REFERENCES sandbox.freelancers (id) ON DELETE RESTRICT,
    package_manager VARCHAR(50) NOT NULL, -- npm, pip, apt, etc
    package_name VARCHAR(255) NOT NULL,
    version VARCHAR(50),
    installed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    committed_to_image BOOLEAN NOT NULL DEFAULT false
);

CREATE TRIGGER clients_set_updated_at BEFORE UPDATE ON sandbox.clients
    FOR EACH ROW EXECUTE FUNCTION sandbox.set_updated_at();
CREATE TRIGGER freelancers_set_updated_at BEFORE UPDATE ON sandbox.freelancers
    FOR EACH ROW EXECUTE FUNCTION sandbox.set_updated_at();
CREATE TRIGGER sandbox_configs_set_updated_at BEFORE UPDATE ON sandbox.sandbox_configs
    FOR EACH ROW EXECUTE FUNCTION sandbox.set_updated_at();

-- The design's indexes, and one for every foreign key a RESTRICT check or a join walks.
CREATE INDEX idx_sessions_freelancer ON sandbox.sessions (freelancer_id);
CREATE INDEX idx_sessions_client ON sandbox.sessions (client_id);
CREATE INDEX idx_usage_session ON sandbox.usage_tracking (session_id);
CREATE INDEX idx_usage_timestamp ON sandbox.usage_tracking ("timestamp");
CREATE INDEX idx_sandbox_configs_client ON sandbox.sandbox_configs (client_id);
CREATE INDEX idx_package_installations_freelancer ON sandbox.package_installations (freelancer_id);

-- +goose Up

-- Admin actions are signed (internal/actor): the audit row names the admin
-- as actor, the channel the action came through (portal-link,
-- portal-session, oidc, operator-cli), and, when an operator acted for the
-- admin, the operator. Additive and nullable: older workers' inserts omit
-- it, and a row without an operator is an admin's own action or the
-- system's.
ALTER TABLE audit_log ADD COLUMN operator text;

-- +goose Down
ALTER TABLE audit_log DROP COLUMN operator;

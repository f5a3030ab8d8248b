-- +goose Up

-- Every portal link that was used: emailed action links, sign-in links.
-- A link's nonce is written in the transaction of the action it carried,
-- so a link works once, and a refused action leaves the link unused.
CREATE TABLE portal_used_links (
    nonce       text PRIMARY KEY,
    action      text NOT NULL,
    recipient   text NOT NULL,
    workflow_id text NOT NULL DEFAULT '',
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz NOT NULL DEFAULT now()
);

-- The action links of a notice, per recipient ({"a@x": {"approve": URL}}):
-- SendGrid puts each recipient's own in their copy (substitutions), and
-- the portal's demo mailbox shows a stored notice as each recipient got it.
ALTER TABLE notification_outbox ADD COLUMN links jsonb NOT NULL DEFAULT '{}';

-- +goose Down
ALTER TABLE notification_outbox DROP COLUMN links;
DROP TABLE portal_used_links;

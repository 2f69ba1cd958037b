-- The original service's clients register with a display name: kept, optional.
alter table users add column name text;

-- Why a refresh-token family was revoked ('logout', 'reuse', 'deleted'), so a refresh
-- after a normal sign-out is reported as what it is, not as token theft.
alter table refresh_tokens add column revoked_reason text;

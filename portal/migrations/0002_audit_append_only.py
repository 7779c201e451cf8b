"""Make the audit trail append-only in PostgreSQL itself.

Triggers on portal_auditevent refuse:
- DELETE and TRUNCATE, always;
- an INSERT that arrives already sealed (the request path only inserts unsealed events);
- every UPDATE except the one-time sealing update done by `portal.audit_chain.seal()`:
  the row was unsealed (seq NULL, hash ''), the new row sets seq, prev_hash and hash, and
  every other column is unchanged.

Only a table owner or superuser can get past them (`ALTER TABLE ... DISABLE TRIGGER`), and the
hash chain plus the exported head catch what such a person changes. SQLite has no equivalent:
this migration does nothing there (`verify_audit` says so).
"""

from django.db import migrations

FUNCTION = "portal_auditevent_append_only"

CREATE_SQL = [
    f"""
    CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            IF NEW.seq IS NULL AND NEW.prev_hash = '' AND NEW.hash = '' THEN
                RETURN NEW;
            END IF;
            RAISE EXCEPTION 'portal_auditevent is append-only: events are inserted unsealed '
                'and only the audit seal may give them seq, prev_hash and hash'
                USING ERRCODE = 'insufficient_privilege';
        ELSIF TG_OP = 'UPDATE' THEN
            -- The one allowed update: sealing a never-sealed event, nothing else changing.
            IF OLD.seq IS NULL AND OLD.hash = '' AND OLD.prev_hash = ''
               AND NEW.seq IS NOT NULL
               AND NEW.prev_hash ~ '^[0-9a-f]{{64}}$'
               AND NEW.hash ~ '^[0-9a-f]{{64}}$'
               AND (to_jsonb(NEW) - 'seq' - 'prev_hash' - 'hash')
                   = (to_jsonb(OLD) - 'seq' - 'prev_hash' - 'hash')
            THEN
                RETURN NEW;
            END IF;
            RAISE EXCEPTION 'portal_auditevent is append-only: UPDATE of audit event % refused '
                '(only the one-time seal of an unsealed event is allowed)', OLD.id
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        RAISE EXCEPTION 'portal_auditevent is append-only: % refused', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END;
    $$;
    """,
    f"""
    CREATE TRIGGER portal_auditevent_append_only_rows
    BEFORE INSERT OR UPDATE OR DELETE ON portal_auditevent
    FOR EACH ROW EXECUTE FUNCTION {FUNCTION}();
    """,
    f"""
    CREATE TRIGGER portal_auditevent_append_only_truncate
    BEFORE TRUNCATE ON portal_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}();
    """,
]

DROP_SQL = [
    "DROP TRIGGER IF EXISTS portal_auditevent_append_only_truncate ON portal_auditevent;",
    "DROP TRIGGER IF EXISTS portal_auditevent_append_only_rows ON portal_auditevent;",
    f"DROP FUNCTION IF EXISTS {FUNCTION}();",
]


def create_triggers(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return  # SQLite (first run on a laptop): no triggers; verify_audit says so.
    for sql in CREATE_SQL:
        schema_editor.execute(sql, params=None)  # None: the % in RAISE is not a placeholder


def drop_triggers(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for sql in DROP_SQL:
        schema_editor.execute(sql, params=None)  # None: the % in RAISE is not a placeholder


class Migration(migrations.Migration):

    dependencies = [
        ("portal", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(create_triggers, drop_triggers, elidable=False),
    ]

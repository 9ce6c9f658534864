import { sql, type Kysely } from "kysely";

import { changeChannelSql } from "./integration-change-channel.js";

/**
 * Applies migration `0004_integration_change_notify` on PostgreSQL: a
 * trigger on `integrations` that sends a notification (see
 * `integration-change-channel.ts`) for every row inserted, updated or
 * deleted, and one for a TRUNCATE.
 *
 * A trigger, rather than a NOTIFY sent by the store, also covers writes
 * that bypass the service's write methods: the re-encrypt command, and an
 * operator's SQL. The notification belongs to the writing transaction, so
 * it is delivered exactly when the change becomes visible, and never for a
 * change that rolled back.
 *
 * The function computes its channel from `TG_TABLE_SCHEMA`, so a schema
 * renamed later keeps working with replicas configured with the new name.
 */
export async function createChangeNotifyTrigger(db: Kysely<unknown>, schema: string): Promise<void> {
  const notify = sql.id(schema, "smsgateway_notify_integration_change");
  const table = sql.id(schema, "integrations");

  // The body contains no identifier or value from outside, only fixed text.
  await sql`
    create function ${notify}() returns trigger language plpgsql as $body$
    declare
      channel text := ${sql.raw(changeChannelSql("TG_TABLE_SCHEMA"))};
    begin
      if TG_OP = 'TRUNCATE' then
        perform pg_notify(channel, json_build_object('op', 'truncate')::text);
      elsif TG_OP = 'DELETE' then
        perform pg_notify(channel, json_build_object('op', 'delete', 'id', OLD.id, 'version', OLD.version)::text);
      else
        perform pg_notify(channel, json_build_object('op', lower(TG_OP), 'id', NEW.id, 'version', NEW.version)::text);
      end if;
      return null;
    end
    $body$`.execute(db);

  await sql`
    create trigger integrations_notify_change
    after insert or update or delete on ${table}
    for each row execute function ${notify}()`.execute(db);

  await sql`
    create trigger integrations_notify_truncate
    after truncate on ${table}
    for each statement execute function ${notify}()`.execute(db);
}

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
  await defineNotifyFunction(db, schema, false);
  const notify = sql.id(schema, "smsgateway_notify_integration_change");
  const table = sql.id(schema, "integrations");

  await sql`
    create trigger integrations_notify_change
    after insert or update or delete on ${table}
    for each row execute function ${notify}()`.execute(db);

  await sql`
    create trigger integrations_notify_truncate
    after truncate on ${table}
    for each statement execute function ${notify}()`.execute(db);
}

/**
 * Applies migration `0005_integration_change_notify_renamed_id` on
 * PostgreSQL: an update that changes a row's id, which only SQL run by hand
 * does, also notifies the old id as deleted. Before, replicas were notified of
 * the new id only, and kept sending through the old one from their caches.
 */
export async function notifyRenamedIntegrationIds(db: Kysely<unknown>, schema: string): Promise<void> {
  await defineNotifyFunction(db, schema, true);
}

/**
 * Creates, or with `notifyRenamedId` replaces, the trigger function. Its body
 * contains no identifier or value from outside, only fixed text.
 */
async function defineNotifyFunction(db: Kysely<unknown>, schema: string, notifyRenamedId: boolean): Promise<void> {
  const notify = sql.id(schema, "smsgateway_notify_integration_change");
  const create = notifyRenamedId ? sql`create or replace function` : sql`create function`;
  const renamed = notifyRenamedId
    ? sql.raw(`
        if TG_OP = 'UPDATE' and OLD.id is distinct from NEW.id then
          perform pg_notify(channel, json_build_object('op', 'delete', 'id', OLD.id, 'version', OLD.version)::text);
        end if;`)
    : sql.raw("");

  await sql`
    ${create} ${notify}() returns trigger language plpgsql as $body$
    declare
      channel text := ${sql.raw(changeChannelSql("TG_TABLE_SCHEMA"))};
    begin
      if TG_OP = 'TRUNCATE' then
        perform pg_notify(channel, json_build_object('op', 'truncate')::text);
      elsif TG_OP = 'DELETE' then
        perform pg_notify(channel, json_build_object('op', 'delete', 'id', OLD.id, 'version', OLD.version)::text);
      else${renamed}
        perform pg_notify(channel, json_build_object('op', lower(TG_OP), 'id', NEW.id, 'version', NEW.version)::text);
      end if;
      return null;
    end
    $body$`.execute(db);
}

-- A notification names every school whose row changed, so a listener re-reads only those
-- rows: an update that changes `school_database` names the old database too
-- ('UPDATE old new'), so the listener drops the old one as well.
create or replace function schools_notify_change() returns trigger
language plpgsql as $$
begin
    if tg_op = 'UPDATE' and old.school_database is distinct from new.school_database then
        perform pg_notify('tenant_edge_catalog',
            'UPDATE ' || old.school_database || ' ' || new.school_database);
    else
        perform pg_notify('tenant_edge_catalog',
            tg_op || ' ' || coalesce(new.school_database, old.school_database));
    end if;
    return null;
end
$$;

-- The catalog: one row per school (tenant). The first three columns are the course's
-- original table; they keep their names and meaning so existing catalogs keep working,
-- which is why this migration adopts an existing `schools` table instead of failing on it.
create table if not exists schools (
    school_id       serial primary key,
    school_name     text not null,
    school_database text not null
);

alter table schools
    add column if not exists slug text,
    -- provisioning: database being created or migrated; active: served; suspended: kept, not served.
    add column if not exists status text not null default 'provisioning',
    -- What the school's database is at, so every replica and the operator see one truth.
    add column if not exists db_version integer not null default 0,
    add column if not exists last_error text,
    add column if not exists provision_attempts integer not null default 0,
    add column if not exists created_at timestamptz not null default now(),
    add column if not exists updated_at timestamptz not null default now();

alter table schools
    add constraint schools_status_check check (status in ('provisioning', 'active', 'suspended'));

-- Rows written by hand with only the original columns get their slug derived here:
-- the database name with '_' written as '-' (the public route's :schoolName).
create or replace function schools_before_write() returns trigger
language plpgsql as $$
begin
    if new.slug is null or new.slug = '' then
        new.slug := replace(new.school_database, '_', '-');
    end if;
    if tg_op = 'UPDATE' then
        new.updated_at := now();
    end if;
    return new;
end
$$;

create trigger schools_before_write
    before insert or update on schools
    for each row execute function schools_before_write();

update schools set slug = replace(school_database, '_', '-') where slug is null;
alter table schools alter column slug set not null;

create unique index if not exists schools_school_database_key on schools (school_database);
create unique index if not exists schools_slug_key on schools (slug);

-- Live reload: every change of `schools` tells the listening servers which school changed.
-- The payload is only a hint; a listener re-reads the table.
create or replace function schools_notify_change() returns trigger
language plpgsql as $$
begin
    perform pg_notify('tenant_edge_catalog',
        tg_op || ' ' || coalesce(new.school_database, old.school_database));
    return null;
end
$$;

create trigger schools_notify_change
    after insert or update or delete on schools
    for each row execute function schools_notify_change();

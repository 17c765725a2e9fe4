-- A school's own data: its lunch weeks and their days (shared/spec/API.md).
create table lunch_week (
    lunch_week_id serial primary key,
    week_of       date not null,
    is_published  boolean not null default false
);

-- GET /api/lunch-week orders by week_of; the public route looks a week up by its date.
create index lunch_week_week_of_idx on lunch_week (week_of);

create table lunch_day (
    lunch_day_id  serial primary key,
    lunch_week_id integer not null references lunch_week on delete cascade,
    day           date not null,
    menu_details  varchar(1000)
);

-- A week's days, ordered by day: serves the join of GET /api/lunch-week/:id, the day list
-- and the cascade of DELETE.
create index lunch_day_lunch_week_id_day_idx on lunch_day (lunch_week_id, day);

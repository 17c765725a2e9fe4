insert into lunch_week (week_of, is_published) values ('2030-01-07', false) returning lunch_week_id;

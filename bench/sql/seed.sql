-- The benchmark's data in one school database: 52 weeks from 2020-01-06, every other one
-- published (ids 1, 3, 5... are published), and five days per week with a ~200-character
-- menu each.
insert into lunch_week (week_of, is_published)
select date '2020-01-06' + 7 * i, i % 2 = 0
from generate_series(0, 51) as i
order by i;

insert into lunch_day (lunch_week_id, day, menu_details)
select w.lunch_week_id, w.week_of + d,
       rpad(format('%s: ', to_char(w.week_of + d, 'Dy DD Mon')), 200,
            'baked chicken with brown rice, steamed green beans, whole-grain roll, fresh apple slices, low-fat milk; ')
from lunch_week as w, generate_series(0, 4) as d
order by w.lunch_week_id, d;

vacuum analyze lunch_week;
vacuum analyze lunch_day;

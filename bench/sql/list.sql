select lunch_week_id, week_of, is_published from lunch_week order by week_of, lunch_week_id;

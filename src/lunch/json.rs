//! The response bodies, written directly into the output buffer.
//!
//! Why not serde_json's derive: in the week list (52 objects) serde escaped every key and
//! every date although none can need it, went through `flatten`'s map machinery for the
//! week with days, and formatted dates through `Serialize` one string at a time, a
//! visible share of tenant-edge's CPU on that endpoint (BENCHMARKS.md, Findings). Here the keys are
//! constant bytes, ids go through `itoa`, dates are their ten ASCII bytes, and only the
//! one free-text field (`menuDetails`) is escaped, by serde_json itself. The bytes are
//! the same as serde_json's for the model types (tests below compare them).

use super::model::{Day, Week, WeekWithDays};

/// Appends the JSON of `self` to `out`.
pub trait WriteJson {
    fn write_json(&self, out: &mut Vec<u8>);

    /// About how many bytes `write_json` appends (at least that, usually): the buffer is
    /// allocated once instead of growing through four reallocations for the list.
    fn size_hint(&self) -> usize;

    fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size_hint());
        self.write_json(&mut out);
        out
    }
}

/// `{"lunchWeekId":2147483647,"weekOf":"2020-11-16","isPublished":false}` is 68 bytes.
const WEEK_BYTES: usize = 68;
/// The same for a day without its menu's text.
const DAY_BYTES: usize = 90;

fn int(out: &mut Vec<u8>, value: i32) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

fn week_fields(out: &mut Vec<u8>, week: &Week) {
    out.extend_from_slice(b"{\"lunchWeekId\":");
    int(out, week.lunch_week_id);
    out.extend_from_slice(b",\"weekOf\":\"");
    out.extend_from_slice(&week.week_of.to_bytes());
    out.extend_from_slice(if week.is_published {
        b"\",\"isPublished\":true"
    } else {
        b"\",\"isPublished\":false"
    });
}

impl WriteJson for Week {
    fn write_json(&self, out: &mut Vec<u8>) {
        week_fields(out, self);
        out.push(b'}');
    }

    fn size_hint(&self) -> usize {
        WEEK_BYTES
    }
}

impl WriteJson for Day {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"lunchDayId\":");
        int(out, self.lunch_day_id);
        out.extend_from_slice(b",\"lunchWeekId\":");
        int(out, self.lunch_week_id);
        out.extend_from_slice(b",\"day\":\"");
        out.extend_from_slice(&self.day.to_bytes());
        out.extend_from_slice(b"\",\"menuDetails\":");
        match &self.menu_details {
            // Writing a string into a Vec cannot fail.
            Some(menu) => {
                let _ = serde_json::to_writer(&mut *out, menu);
            }
            None => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
    }

    fn size_hint(&self) -> usize {
        DAY_BYTES + self.menu_details.as_ref().map_or(0, String::len)
    }
}

impl WriteJson for WeekWithDays {
    fn write_json(&self, out: &mut Vec<u8>) {
        week_fields(out, &self.week);
        out.extend_from_slice(b",\"lunchDays\":");
        self.lunch_days.write_json(out);
        out.push(b'}');
    }

    fn size_hint(&self) -> usize {
        WEEK_BYTES + 16 + self.lunch_days.size_hint()
    }
}

impl<T: WriteJson> WriteJson for [T] {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'[');
        for (index, item) in self.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            item.write_json(out);
        }
        out.push(b']');
    }

    fn size_hint(&self) -> usize {
        2 + self.iter().map(|item| item.size_hint() + 1).sum::<usize>()
    }
}

impl<T: WriteJson> WriteJson for Vec<T> {
    fn write_json(&self, out: &mut Vec<u8>) {
        self.as_slice().write_json(out);
    }

    fn size_hint(&self) -> usize {
        self.as_slice().size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::date::Date;

    fn date(text: &str) -> Date {
        text.parse().unwrap()
    }

    fn day(id: i32, menu: Option<&str>) -> Day {
        Day {
            lunch_day_id: id,
            lunch_week_id: 7,
            day: date("2020-11-16"),
            menu_details: menu.map(str::to_string),
        }
    }

    #[test]
    fn the_bytes_are_serde_jsons() {
        let weeks = vec![
            Week {
                lunch_week_id: 7,
                week_of: date("2020-11-16"),
                is_published: false,
            },
            Week {
                lunch_week_id: i32::MAX,
                week_of: date("0001-01-01"),
                is_published: true,
            },
            Week {
                lunch_week_id: -3,
                week_of: date("9999-12-31"),
                is_published: true,
            },
        ];
        assert_eq!(weeks.to_json(), serde_json::to_vec(&weeks).unwrap());
        assert_eq!(Vec::<Week>::new().to_json(), b"[]");

        // Every character that must be escaped, non-ASCII text, and a missing menu.
        let menus = [
            Some("Pizza"),
            Some("\"quoted\" \\ back/slash\n\t\r\u{8}\u{c}\u{1}\u{1f}"),
            Some("Crème brûlée 🍮 \u{2028}"),
            Some(""),
            None,
        ];
        let days: Vec<Day> = menus
            .iter()
            .enumerate()
            .map(|(i, m)| day(i as i32, *m))
            .collect();
        assert_eq!(days.to_json(), serde_json::to_vec(&days).unwrap());

        let week = WeekWithDays {
            week: weeks[0].clone(),
            lunch_days: days,
        };
        assert_eq!(week.to_json(), serde_json::to_vec(&week).unwrap());
        let empty = WeekWithDays {
            week: weeks[1].clone(),
            lunch_days: Vec::new(),
        };
        assert_eq!(empty.to_json(), serde_json::to_vec(&empty).unwrap());
        // The hint covers the bytes (one allocation) without being far off.
        for (hint, written) in [
            (weeks.size_hint(), weeks.to_json().len()),
            (week.size_hint(), week.to_json().len()),
        ] {
            assert!(
                hint >= written && hint < written * 2,
                "{hint} for {written}"
            );
        }
        // And it is the API.md form.
        assert_eq!(
            weeks[0].to_json(),
            br#"{"lunchWeekId":7,"weekOf":"2020-11-16","isPublished":false}"#
        );
    }
}

#[cfg(test)]
mod proptests;

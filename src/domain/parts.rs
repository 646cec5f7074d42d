//! How a multipart upload is cut into parts, and what its stored parts lack.

use super::InvalidValue;

const MIB: i64 = 1 << 20;
/// The largest object one PUT may carry.
pub const MAX_SINGLE_PUT_BYTES: i64 = 5 << 30;
/// The largest object S3 stores.
pub const MAX_OBJECT_BYTES: i64 = 5 << 40;
/// S3's bounds on a part (all but the last), and on how many parts there are.
pub const MIN_PART_BYTES: i64 = 5 * MIB;
pub const MAX_PART_BYTES: i64 = 5 << 30;
pub const MAX_PARTS: i64 = 10_000;
/// The part size when the client names none and the object fits 10,000 of them.
const DEFAULT_PART_BYTES: i64 = 8 * MIB;

/// The parts of a multipart upload: all of `part_size_bytes` but the last, which holds the
/// rest. Equal parts are what every S3-compatible store accepts (R2 requires them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartPlan {
    pub size_bytes: i64,
    pub part_size_bytes: i64,
    pub part_count: i32,
}

/// What a stored part's number and size say about it against the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartsCheck {
    Complete,
    /// Part numbers the plan has and the store does not, in order.
    Missing(Vec<i32>),
    /// Parts whose size is not the plan's: (number, expected, actual).
    WrongSize(Vec<(i32, i64, i64)>),
}

impl PartPlan {
    /// The plan for an object of `size_bytes`: parts of `asked` bytes when given, else of
    /// 8 MiB, or of the smallest whole MiB that needs no more than 10,000 parts.
    pub fn new(size_bytes: i64, asked: Option<i64>) -> Result<PartPlan, InvalidValue> {
        if !(1..=MAX_OBJECT_BYTES).contains(&size_bytes) {
            return Err(InvalidValue(format!(
                "a multipart upload holds 1 to {MAX_OBJECT_BYTES} bytes (5 TiB), not {size_bytes}"
            )));
        }
        let part_size_bytes = match asked {
            Some(part) => {
                if !(MIN_PART_BYTES..=MAX_PART_BYTES).contains(&part) {
                    return Err(InvalidValue(format!(
                        "part_size_bytes must be between {MIN_PART_BYTES} (5 MiB) and {MAX_PART_BYTES} (5 GiB), not {part}"
                    )));
                }
                part
            }
            None => {
                let fitting = ceil_div(ceil_div(size_bytes, MAX_PARTS), MIB) * MIB;
                fitting.max(DEFAULT_PART_BYTES)
            }
        };
        let count = ceil_div(size_bytes, part_size_bytes);
        if count > MAX_PARTS {
            return Err(InvalidValue(format!(
                "parts of {part_size_bytes} bytes cut {size_bytes} bytes into {count} parts, past S3's {MAX_PARTS}; use parts of at least {} bytes",
                ceil_div(size_bytes, MAX_PARTS)
            )));
        }
        Ok(PartPlan {
            size_bytes,
            part_size_bytes,
            part_count: i32::try_from(count).unwrap_or(i32::MAX),
        })
    }

    /// The plan of an upload as stored.
    pub fn stored(size_bytes: i64, part_size_bytes: i64, part_count: i32) -> PartPlan {
        PartPlan {
            size_bytes,
            part_size_bytes,
            part_count,
        }
    }

    /// Whether `number` is one of the plan's parts.
    pub fn has(&self, number: i32) -> bool {
        (1..=self.part_count).contains(&number)
    }

    /// The size part `number` must have.
    pub fn part_len(&self, number: i32) -> i64 {
        if number == self.part_count {
            self.size_bytes - self.part_size_bytes * i64::from(self.part_count - 1)
        } else {
            self.part_size_bytes
        }
    }

    /// Checks the parts a store holds, as (number, size), against the plan. Parts the plan
    /// does not have are ignored: they are left out of the object.
    pub fn check(&self, stored: &[(i32, i64)]) -> PartsCheck {
        let mut held = vec![None; usize::try_from(self.part_count).unwrap_or(0)];
        for &(number, size) in stored {
            if self.has(number) {
                held[usize::try_from(number - 1).unwrap_or(0)] = Some(size);
            }
        }
        let missing: Vec<i32> = (1..=self.part_count)
            .filter(|n| held[usize::try_from(n - 1).unwrap_or(0)].is_none())
            .collect();
        if !missing.is_empty() {
            return PartsCheck::Missing(missing);
        }
        let wrong: Vec<(i32, i64, i64)> = (1..=self.part_count)
            .filter_map(|n| {
                let actual = held[usize::try_from(n - 1).unwrap_or(0)]?;
                (actual != self.part_len(n)).then(|| (n, self.part_len(n), actual))
            })
            .collect();
        if wrong.is_empty() {
            PartsCheck::Complete
        } else {
            PartsCheck::WrongSize(wrong)
        }
    }
}

/// `a / b` rounded up, for positive numbers (`i64::div_ceil` is not stable).
fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

/// Part numbers as runs: `[2, 5, 6, 7]` reads "2, 5-7".
pub fn number_runs(numbers: &[i32]) -> String {
    let mut runs: Vec<String> = Vec::new();
    let mut i = 0;
    while i < numbers.len() {
        let start = numbers[i];
        let mut end = start;
        while i + 1 < numbers.len() && numbers[i + 1] == end + 1 {
            end += 1;
            i += 1;
        }
        runs.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    runs.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (object size, part size asked) → (part size, part count), or refused.
    type PlanCase = (i64, Option<i64>, Option<(i64, i32)>);

    #[test]
    fn plans() {
        let table: [PlanCase; 9] = [
            (1, None, Some((8 * MIB, 1))),
            (15 * MIB, Some(5 * MIB), Some((5 * MIB, 3))),
            (15 * MIB + 1, Some(5 * MIB), Some((5 * MIB, 4))),
            (20 << 30, None, Some((8 * MIB, 2560))),
            // 5 TiB needs parts of 525 MiB to fit 10,000.
            (MAX_OBJECT_BYTES, None, Some((525 * MIB, 9987))),
            (MAX_OBJECT_BYTES + 1, None, None),
            (0, None, None),
            (100 * MIB, Some(5 * MIB - 1), None),
            (60_000 * MIB, Some(5 * MIB), None),
        ];
        for (size, asked, want) in table {
            let got = PartPlan::new(size, asked)
                .ok()
                .map(|p| (p.part_size_bytes, p.part_count));
            assert_eq!(got, want, "{size} {asked:?}");
        }
    }

    #[test]
    fn the_last_part_holds_the_rest() {
        let plan = PartPlan::new(15 * MIB + 7, Some(5 * MIB)).unwrap();
        assert_eq!(plan.part_len(1), 5 * MIB);
        assert_eq!(plan.part_len(3), 5 * MIB);
        assert_eq!(plan.part_len(4), 7);
        let total: i64 = (1..=plan.part_count).map(|n| plan.part_len(n)).sum();
        assert_eq!(total, plan.size_bytes);
    }

    #[test]
    fn stored_parts_are_checked_against_the_plan() {
        let plan = PartPlan::new(12 * MIB, Some(5 * MIB)).unwrap();
        let m = 5 * MIB;
        let table = [
            (vec![(1, m), (2, m), (3, 2 * MIB)], PartsCheck::Complete),
            (vec![(3, 2 * MIB), (1, m), (2, m)], PartsCheck::Complete),
            (
                vec![(1, m), (2, m), (3, 2 * MIB), (9, 1)],
                PartsCheck::Complete,
            ),
            (vec![(2, m)], PartsCheck::Missing(vec![1, 3])),
            (vec![], PartsCheck::Missing(vec![1, 2, 3])),
            (
                vec![(1, m), (2, m - 1), (3, 2 * MIB)],
                PartsCheck::WrongSize(vec![(2, m, m - 1)]),
            ),
        ];
        for (stored, want) in table {
            assert_eq!(plan.check(&stored), want, "{stored:?}");
        }
    }

    #[test]
    fn runs() {
        assert_eq!(number_runs(&[2, 5, 6, 7]), "2, 5-7");
        assert_eq!(number_runs(&[1]), "1");
        assert_eq!(number_runs(&[1, 2, 4, 5, 9]), "1-2, 4-5, 9");
        assert_eq!(number_runs(&[]), "");
    }
}

//! The platform's fees, in basis points of an amount plus a fixed part in the amount's own minor
//! units, rounded half up to the minor unit and never more than the amount itself.

/// Fee rules (`[payouts]` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeePolicy {
    /// Taken from each sale: basis points of the order total...
    pub sale_bps: u32,
    /// ...plus this many minor units.
    pub sale_fixed: i64,
    /// Taken from an instant payout: basis points of the amount...
    pub instant_bps: u32,
    /// ...but at least this many minor units.
    pub instant_min: i64,
}

impl Default for FeePolicy {
    fn default() -> Self {
        Self {
            sale_bps: 290,
            sale_fixed: 30,
            instant_bps: 100,
            instant_min: 50,
        }
    }
}

fn of_bps(amount: i64, bps: u32) -> i64 {
    ((i128::from(amount) * i128::from(bps) + 5_000) / 10_000) as i64
}

impl FeePolicy {
    pub fn sale_fee(&self, total: i64) -> i64 {
        (of_bps(total, self.sale_bps) + self.sale_fixed).clamp(0, total.max(0))
    }

    pub fn instant_payout_fee(&self, amount: i64) -> i64 {
        of_bps(amount, self.instant_bps)
            .max(self.instant_min)
            .clamp(0, amount.max(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fees_round_half_up_and_never_exceed_the_amount() {
        let f = FeePolicy::default();
        // 2.9 % of 49.00 = 1.421 -> 1.42, + 0.30.
        assert_eq!(f.sale_fee(4900), 172);
        // 2.9 % of 50 minor units = 1.45 -> 1, + 30 = 31; of 1 unit: capped at 1.
        assert_eq!(f.sale_fee(50), 31);
        assert_eq!(f.sale_fee(1), 1);
        assert_eq!(f.sale_fee(0), 0);
        // Half a minor unit rounds up: 2.9 % of 5000 = 145 exactly; of 17241 = 499.989 -> 500.
        assert_eq!(f.sale_fee(17_241) - 30, 500);
        assert_eq!(f.instant_payout_fee(100_000), 1000);
        assert_eq!(f.instant_payout_fee(1000), 50);
        assert_eq!(f.instant_payout_fee(20), 20);
    }
}

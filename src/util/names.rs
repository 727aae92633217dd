//! Enums whose values have a name on the wire or in config (`"proxied"`,
//! `"running"`, `"daily"`): the names are written once, next to the variants,
//! and `as_str`, `parse`, `ALL` and `Display` come from that one table.

/// Declares an enum with a wire name per variant:
///
/// ```ignore
/// wire_names! {
///     #[derive(Debug, Clone, Copy, PartialEq, Eq)]
///     pub enum Stream { Stdout = "stdout", Stderr = "stderr" }
/// }
/// ```
macro_rules! wire_names {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $( $(#[$variant_meta])* $variant ),+
        }

        #[allow(dead_code)]
        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text ),+
                }
            }

            /// The value with this exact name.
            pub fn parse(text: &str) -> Option<$name> {
                match text {
                    $( $text => Some($name::$variant), )+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub(crate) use wire_names;

#[cfg(test)]
mod tests {
    wire_names! {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Sample {
            /// A documented variant.
            First = "first",
            SecondOne = "second-one",
        }
    }

    #[test]
    fn names_round_trip() {
        for value in Sample::ALL {
            assert_eq!(Sample::parse(value.as_str()), Some(*value));
        }
        assert_eq!(Sample::SecondOne.to_string(), "second-one");
        assert_eq!(Sample::parse("First"), None);
    }
}

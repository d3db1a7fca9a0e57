//! Applies settings (`setting`) while a RON file is deserialized: a serde `Deserializer` that
//! wraps ron's and, at a setting's path, deserializes the setting's value in place of the
//! file's (the file's is read and dropped). A setting of a struct field the file leaves out is
//! added after the struct's last field. Only the branches a setting goes through are wrapped;
//! the rest of the file is read by ron directly.
//!
//! Invariant: after a successful parse every setting is either applied or reported by
//! [`State::unapplied`] with the names found where its path left the file.

use crate::setting::{display, suggest, Setting, Step};
use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IgnoredAny, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};
use std::cell::{Cell, RefCell};

/// What the file holds at the deepest point a setting's path reached.
#[derive(Clone, Debug)]
enum Level {
    /// A struct: its declared fields and the ones the file writes.
    Struct {
        fields: &'static [&'static str],
        present: Vec<String>,
    },
    /// A map: its keys.
    Map(Vec<String>),
    /// A list of this many elements.
    List(usize),
    /// A single value (number, string, unit variant…).
    Value,
}

/// How far one setting's path got.
#[derive(Clone, Debug, Default)]
struct Trace {
    applied: bool,
    /// Steps of the path found in the file (the level below is `level`).
    depth: usize,
    level: Option<Level>,
}

/// The settings of one parse and what became of them.
pub(crate) struct State<'de> {
    settings: &'de [Setting],
    /// Read setting `i`'s value as a quoted string (a bare word that is not RON).
    quote: Vec<bool>,
    options: ron::Options,
    traces: RefCell<Vec<Trace>>,
    /// The last map key read.
    key: RefCell<Option<String>>,
    /// The setting whose value failed to deserialize.
    failed: Cell<Option<usize>>,
}

/// Where a path stands relative to the settings.
enum Route {
    /// Setting `i` replaces the value here.
    Set(usize),
    /// A setting lies below.
    Into,
    /// No setting here or below.
    Past,
}

impl<'de> State<'de> {
    /// A state for `settings`; `quote[i]` reads setting `i`'s value as a string.
    pub(crate) fn new(settings: &'de [Setting], quote: Vec<bool>, options: ron::Options) -> Self {
        State {
            settings,
            quote,
            options,
            traces: RefCell::new(vec![Trace::default(); settings.len()]),
            key: RefCell::new(None),
            failed: Cell::new(None),
        }
    }

    /// The setting whose value could not be read, if that is why the parse failed.
    pub(crate) fn failed(&self) -> Option<usize> {
        self.failed.get()
    }

    fn route(&self, at: &[Step]) -> Route {
        let mut into = false;
        for (i, s) in self.settings.iter().enumerate() {
            if s.steps == at {
                return Route::Set(i);
            }
            into |= s.steps.starts_with(at);
        }
        if into {
            Route::Into
        } else {
            Route::Past
        }
    }

    /// Notes what the file holds at `at` for each setting going below it.
    fn record(&self, at: &[Step], level: &Level) {
        let mut traces = self.traces.borrow_mut();
        for (s, t) in self.settings.iter().zip(traces.iter_mut()) {
            if s.steps.len() > at.len() && s.steps.starts_with(at) && at.len() >= t.depth {
                t.depth = at.len();
                t.level = Some(level.clone());
            }
        }
    }

    /// Deserializes setting `i`'s value with `f`.
    fn substitute<T, E: de::Error>(
        &self,
        i: usize,
        f: impl FnOnce(&mut ron::Deserializer<'de>) -> Result<T, ron::Error>,
    ) -> Result<T, E> {
        let s = &self.settings[i];
        self.traces.borrow_mut()[i].applied = true;
        let text: &'de str = if self.quote[i] { &s.quoted } else { &s.value };
        let fail = |e: &dyn std::fmt::Display| {
            self.failed.set(Some(i));
            E::custom(format!("the value `{text}` given by --set {}: {e}", s.path))
        };
        let mut de =
            ron::Deserializer::from_str_with_options(text, &self.options).map_err(|e| fail(&e))?;
        let value = f(&mut de).map_err(|e| fail(&e))?;
        de.end().map_err(|e| fail(&e))?;
        Ok(value)
    }

    /// Why each setting that was not applied could not be: `(setting index, message)`.
    pub(crate) fn unapplied(&self) -> Vec<(usize, String)> {
        let traces = self.traces.borrow();
        let mut out = Vec::new();
        for (i, (s, t)) in self.settings.iter().zip(traces.iter()).enumerate() {
            if !t.applied {
                out.push((i, explain(s, t)));
            }
        }
        out
    }
}

/// Why `s` was not applied, from how far its path got.
fn explain(s: &Setting, t: &Trace) -> String {
    let here = display(&s.steps[..t.depth]);
    let Some(next) = s.steps.get(t.depth) else {
        return format!("`{}` was not found in the scenario", s.path);
    };
    let names = |names: &[String], what: &str| {
        let wanted = match next {
            Step::Key(k) => k.clone(),
            Step::Index(i) => format!("[{i}]"),
        };
        let (sorted, near) = suggest(&wanted, names);
        let hint = near.map_or(String::new(), |n| format!(" (did you mean `{n}`?)"));
        format!(
            "no {what} `{wanted}` in `{here}`{hint}; expected one of: {}",
            sorted.join(", ")
        )
    };
    match (&t.level, next) {
        (Some(Level::Struct { fields, present }), Step::Key(k)) => {
            if fields.contains(&k.as_str()) && !present.contains(k) {
                format!(
                    "`{here}.{k}` is not written in the scenario, so nothing inside it can be set: \
                     set `{here}.{k}` whole"
                )
            } else {
                let all: Vec<String> = fields.iter().map(|f| (*f).to_owned()).collect();
                names(&all, "field")
            }
        }
        (Some(Level::Map(keys)), Step::Key(_)) => names(keys, "key"),
        (Some(Level::List(n)), Step::Index(i)) => {
            format!("`{here}` has {n} element(s): index {i} is out of range")
        }
        (Some(Level::List(_)), Step::Key(k)) => {
            format!("`{here}` is a list: name an element by index, e.g. `{here}[0].{k}`")
        }
        (Some(Level::Struct { .. } | Level::Map(_)), Step::Index(_)) => {
            format!("`{here}` is not a list")
        }
        (Some(Level::Value), _) => {
            format!("`{here}` is a single value: the path cannot go further inside it")
        }
        (None, _) => format!("`{}` was not found in the scenario", s.path),
    }
}

/// The wrapping deserializer, positioned at path `at`.
pub(crate) struct Overlay<'s, 'de, D> {
    de: D,
    at: Vec<Step>,
    state: &'s State<'de>,
}

impl<'s, 'de, D> Overlay<'s, 'de, D> {
    /// The deserializer for a whole file.
    pub(crate) fn root(de: D, state: &'s State<'de>) -> Self {
        Overlay {
            de,
            at: Vec::new(),
            state,
        }
    }
}

macro_rules! overlay_methods {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            match self.state.route(&self.at) {
                Route::Set(i) => {
                    self.de.deserialize_ignored_any(IgnoredAny)?;
                    self.state.substitute(i, |de| de.$method($($arg,)* visitor))
                }
                Route::Into => self.de.$method($($arg,)* Wrap::new(visitor, self.at, self.state, None)),
                Route::Past => self.de.$method($($arg,)* visitor),
            }
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Overlay<'_, 'de, D> {
    type Error = D::Error;

    overlay_methods! {
        deserialize_any(); deserialize_bool(); deserialize_i8(); deserialize_i16();
        deserialize_i32(); deserialize_i64(); deserialize_i128(); deserialize_u8();
        deserialize_u16(); deserialize_u32(); deserialize_u64(); deserialize_u128();
        deserialize_f32(); deserialize_f64(); deserialize_char(); deserialize_str();
        deserialize_string(); deserialize_bytes(); deserialize_byte_buf();
        deserialize_option(); deserialize_unit(); deserialize_seq(); deserialize_map();
        deserialize_identifier();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        match self.state.route(&self.at) {
            Route::Set(i) => {
                self.de.deserialize_ignored_any(IgnoredAny)?;
                self.state
                    .substitute(i, |de| de.deserialize_struct(name, fields, visitor))
            }
            Route::Into => self.de.deserialize_struct(
                name,
                fields,
                Wrap::new(visitor, self.at, self.state, Some(fields)),
            ),
            Route::Past => self.de.deserialize_struct(name, fields, visitor),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.de.deserialize_ignored_any(visitor)
    }

    fn is_human_readable(&self) -> bool {
        self.de.is_human_readable()
    }
}

/// A visitor below which some setting lies: wraps the maps, lists and enums it is given.
struct Wrap<'s, 'de, V> {
    visitor: V,
    at: Vec<Step>,
    state: &'s State<'de>,
    /// The struct's declared fields, when it is one.
    fields: Option<&'static [&'static str]>,
}

impl<'s, 'de, V> Wrap<'s, 'de, V> {
    fn new(
        visitor: V,
        at: Vec<Step>,
        state: &'s State<'de>,
        fields: Option<&'static [&'static str]>,
    ) -> Self {
        Wrap {
            visitor,
            at,
            state,
            fields,
        }
    }
}

macro_rules! scalar_visits {
    ($($method:ident($ty:ty);)*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            self.state.record(&self.at, &Level::Value);
            self.visitor.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, 'de, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.visitor.expecting(f)
    }

    scalar_visits! {
        visit_bool(bool); visit_i8(i8); visit_i16(i16); visit_i32(i32); visit_i64(i64);
        visit_i128(i128); visit_u8(u8); visit_u16(u16); visit_u32(u32); visit_u64(u64);
        visit_u128(u128); visit_f32(f32); visit_f64(f64); visit_char(char); visit_str(&str);
        visit_borrowed_str(&'de str); visit_string(String); visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]); visit_byte_buf(Vec<u8>);
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.state.record(&self.at, &Level::Value);
        self.visitor.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.state.record(&self.at, &Level::Value);
        self.visitor.visit_unit()
    }

    fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
        self.visitor.visit_some(Overlay {
            de: d,
            at: self.at,
            state: self.state,
        })
    }

    fn visit_newtype_struct<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
        self.visitor.visit_newtype_struct(Overlay {
            de: d,
            at: self.at,
            state: self.state,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.visitor.visit_seq(Seq {
            seq,
            at: self.at,
            state: self.state,
            index: 0,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.visitor.visit_map(Map {
            map,
            at: self.at,
            state: self.state,
            fields: self.fields,
            keys: Vec::new(),
            current: None,
            ended: false,
            inject: None,
        })
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        self.visitor.visit_enum(Enum {
            data,
            at: self.at,
            state: self.state,
        })
    }
}

/// An enum at `at`: the variant is not a step of the path, its contents sit at `at`.
struct Enum<'s, 'de, A> {
    data: A,
    at: Vec<Step>,
    state: &'s State<'de>,
}

impl<'s, 'de, A: EnumAccess<'de>> EnumAccess<'de> for Enum<'s, 'de, A> {
    type Error = A::Error;
    type Variant = Variant<'s, 'de, A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), A::Error> {
        let (value, variant) = self.data.variant_seed(seed)?;
        let variant = Variant {
            variant,
            at: self.at,
            state: self.state,
        };
        Ok((value, variant))
    }
}

/// An enum variant's contents at `at`.
struct Variant<'s, 'de, A> {
    variant: A,
    at: Vec<Step>,
    state: &'s State<'de>,
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Variant<'_, 'de, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.state.record(&self.at, &Level::Value);
        self.variant.unit_variant()
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, A::Error> {
        self.variant.newtype_variant_seed(Seed {
            seed,
            at: self.at,
            state: self.state,
        })
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        let wrap = Wrap::new(visitor, self.at, self.state, None);
        self.variant.tuple_variant(len, wrap)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let wrap = Wrap::new(visitor, self.at, self.state, Some(fields));
        self.variant.struct_variant(fields, wrap)
    }
}

/// A seed that deserializes through an `Overlay` at `at`.
struct Seed<'s, 'de, S> {
    seed: S,
    at: Vec<Step>,
    state: &'s State<'de>,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'_, 'de, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.seed.deserialize(Overlay {
            de: d,
            at: self.at,
            state: self.state,
        })
    }
}

/// A list, each element at `at[index]`.
struct Seq<'s, 'de, A> {
    seq: A,
    at: Vec<Step>,
    state: &'s State<'de>,
    index: usize,
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Seq<'_, 'de, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        let mut at = self.at.clone();
        at.push(Step::Index(self.index));
        let element = self.seq.next_element_seed(Seed {
            seed,
            at,
            state: self.state,
        })?;
        match element {
            Some(v) => {
                self.index += 1;
                Ok(Some(v))
            }
            None => {
                self.state.record(&self.at, &Level::List(self.index));
                Ok(None)
            }
        }
    }

    fn size_hint(&self) -> Option<usize> {
        self.seq.size_hint()
    }
}

/// A map or struct, each value at `at.key`; settings of absent struct fields are added at
/// its end.
struct Map<'s, 'de, A> {
    map: A,
    at: Vec<Step>,
    state: &'s State<'de>,
    fields: Option<&'static [&'static str]>,
    /// Keys read so far.
    keys: Vec<String>,
    /// The key whose value comes next.
    current: Option<String>,
    /// The file's entries are all read.
    ended: bool,
    /// The setting whose value comes next, for an added field.
    inject: Option<usize>,
}

impl<'de, A: MapAccess<'de>> Map<'_, 'de, A> {
    /// At the end of the file's entries: records the level, then names the next setting of
    /// an absent field to add, if any.
    fn end(&mut self) -> Option<(usize, &'static str)> {
        let level = match self.fields {
            Some(fields) => Level::Struct {
                fields,
                present: self.keys.clone(),
            },
            None => Level::Map(self.keys.clone()),
        };
        if !self.ended {
            self.state.record(&self.at, &level);
            self.ended = true;
        }
        let fields = self.fields?;
        let traces = self.state.traces.borrow();
        self.state
            .settings
            .iter()
            .enumerate()
            .find_map(|(i, s)| match s.steps.split_last() {
                Some((Step::Key(k), parent))
                    if parent == self.at.as_slice()
                        && !traces[i].applied
                        && !self.keys.contains(k) =>
                {
                    fields.iter().find(|f| **f == k.as_str()).map(|f| (i, *f))
                }
                _ => None,
            })
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Map<'_, 'de, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        if self.ended {
            return Ok(None);
        }
        *self.state.key.borrow_mut() = None;
        // The seed goes back to `slot` untouched when the file has no more entries, so it can
        // read an added field's name.
        let mut slot = Some(seed);
        let key = self.map.next_key_seed(KeySeed {
            slot: &mut slot,
            state: self.state,
        })?;
        if let Some(key) = key {
            self.current = self.state.key.borrow_mut().take();
            if let Some(k) = &self.current {
                self.keys.push(k.clone());
            }
            return Ok(Some(key));
        }
        match (self.end(), slot.take()) {
            (Some((i, field)), Some(seed)) => {
                self.inject = Some(i);
                let name: de::value::StrDeserializer<'_, A::Error> =
                    de::IntoDeserializer::into_deserializer(field);
                seed.deserialize(name).map(Some)
            }
            _ => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        if let Some(i) = self.inject.take() {
            return self.state.substitute(i, |de| seed.deserialize(de));
        }
        match self.current.take() {
            Some(k) => {
                let mut at = self.at.clone();
                at.push(Step::Key(k));
                self.map.next_value_seed(Seed {
                    seed,
                    at,
                    state: self.state,
                })
            }
            None => self.map.next_value_seed(seed),
        }
    }
}

/// A map key's seed that notes the key's text.
struct KeySeed<'a, 's, 'de, S> {
    /// The seed, taken when a key is read.
    slot: &'a mut Option<S>,
    state: &'s State<'de>,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for KeySeed<'_, '_, 'de, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        let seed = self
            .slot
            .take()
            .ok_or_else(|| de::Error::custom("a map key was read twice"))?;
        seed.deserialize(KeyDe {
            de: d,
            state: self.state,
        })
    }
}

/// A key's deserializer: every visitor it is given notes the key.
struct KeyDe<'s, 'de, D> {
    de: D,
    state: &'s State<'de>,
}

macro_rules! key_methods {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            self.de.$method($($arg,)* KeyVisitor { visitor, state: self.state })
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for KeyDe<'_, 'de, D> {
    type Error = D::Error;

    key_methods! {
        deserialize_any(); deserialize_bool(); deserialize_i8(); deserialize_i16();
        deserialize_i32(); deserialize_i64(); deserialize_i128(); deserialize_u8();
        deserialize_u16(); deserialize_u32(); deserialize_u64(); deserialize_u128();
        deserialize_f32(); deserialize_f64(); deserialize_char(); deserialize_str();
        deserialize_string(); deserialize_bytes(); deserialize_byte_buf();
        deserialize_option(); deserialize_unit(); deserialize_seq(); deserialize_map();
        deserialize_identifier(); deserialize_ignored_any();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
    }

    fn is_human_readable(&self) -> bool {
        self.de.is_human_readable()
    }
}

/// Notes a key's text, then hands it on.
struct KeyVisitor<'s, 'de, V> {
    visitor: V,
    state: &'s State<'de>,
}

impl<V> KeyVisitor<'_, '_, V> {
    fn note(&self, key: impl ToString) {
        *self.state.key.borrow_mut() = Some(key.to_string());
    }
}

macro_rules! key_visits {
    ($($method:ident($ty:ty);)*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            self.note(&v);
            self.visitor.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for KeyVisitor<'_, 'de, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.visitor.expecting(f)
    }

    key_visits! {
        visit_bool(bool); visit_i8(i8); visit_i16(i16); visit_i32(i32); visit_i64(i64);
        visit_i128(i128); visit_u8(u8); visit_u16(u16); visit_u32(u32); visit_u64(u64);
        visit_u128(u128); visit_char(char); visit_str(&str); visit_borrowed_str(&'de str);
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        self.note(&v);
        self.visitor.visit_string(v)
    }
}

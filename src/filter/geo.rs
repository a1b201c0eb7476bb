//! Geo conditions, as Qdrant evaluates them: a payload point is an object with numeric `lon`
//! and `lat` (or an array of such objects); a radius is measured along the sphere (haversine),
//! boxes and polygons in plain longitude/latitude, and every boundary is excluded.

use serde_json::Value;

/// The mean Earth radius of GRS 80, in meters (what Qdrant's haversine uses).
const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// A point on the Earth, in degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeoPoint {
    /// Longitude, -180 to 180.
    pub lon: f64,
    /// Latitude, -90 to 90.
    pub lat: f64,
}

/// A geo condition on the points a key reaches.
///
/// ```
/// use grape_vector_db::{Condition, Payload, PointId};
/// let near_paris: Condition = serde_json::from_str(r#"{"key": "at", "geo_radius": {
///     "center": {"lon": 2.3522, "lat": 48.8566}, "radius": 10000}}"#).unwrap();
/// let louvre: Payload = serde_json::from_str(r#"{"at": {"lon": 2.3376, "lat": 48.8606}}"#).unwrap();
/// let lyon: Payload = serde_json::from_str(r#"{"at": {"lon": 4.8357, "lat": 45.7640}}"#).unwrap();
/// assert!(near_paris.matches(PointId::Num(1), &louvre));
/// assert!(!near_paris.matches(PointId::Num(2), &lyon));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum GeoCondition {
    /// Closer than `radius` meters to `center`.
    Radius {
        /// The centre.
        center: GeoPoint,
        /// Meters.
        radius: f64,
    },
    /// Strictly inside the box (one crossing the antimeridian when `top_left.lon` is greater
    /// than `bottom_right.lon`).
    BoundingBox {
        /// North-west corner.
        top_left: GeoPoint,
        /// South-east corner.
        bottom_right: GeoPoint,
    },
    /// Strictly inside the exterior ring and outside every hole (rings closed: first point
    /// equals last).
    Polygon {
        /// The outer ring.
        exterior: Vec<GeoPoint>,
        /// Holes.
        interiors: Vec<Vec<GeoPoint>>,
    },
}

impl GeoPoint {
    /// The point of a payload value: an object with numeric `lon` and `lat`.
    pub(super) fn of_value(v: &Value) -> Option<GeoPoint> {
        let map = v.as_object()?;
        Some(GeoPoint {
            lon: map.get("lon")?.as_f64()?,
            lat: map.get("lat")?.as_f64()?,
        })
    }

    /// Meters along the sphere to `other`.
    fn haversine(&self, other: &GeoPoint) -> f64 {
        let (phi1, phi2) = (self.lat.to_radians(), other.lat.to_radians());
        let d_phi = (other.lat - self.lat).to_radians();
        let d_lambda = (other.lon - self.lon).to_radians();
        let a =
            (d_phi / 2.0).sin().powi(2) + phi1.cos() * phi2.cos() * (d_lambda / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_M * a.sqrt().asin()
    }
}

impl GeoCondition {
    /// Whether a payload value is a point this condition holds for.
    pub(super) fn contains_value(&self, v: &Value) -> bool {
        GeoPoint::of_value(v).is_some_and(|p| self.contains(&p))
    }

    fn contains(&self, p: &GeoPoint) -> bool {
        match self {
            GeoCondition::Radius { center, radius } => center.haversine(p) < *radius,
            GeoCondition::BoundingBox {
                top_left: tl,
                bottom_right: br,
            } => {
                let lat_inside = br.lat < p.lat && p.lat < tl.lat;
                let lon_inside = match tl.lon > br.lon {
                    true => p.lon > tl.lon || p.lon < br.lon,
                    false => tl.lon < p.lon && p.lon < br.lon,
                };
                lat_inside && lon_inside
            }
            GeoCondition::Polygon {
                exterior,
                interiors,
            } => {
                ring_position(exterior, p) == Position::Inside
                    && interiors
                        .iter()
                        .all(|hole| ring_position(hole, p) == Position::Outside)
            }
        }
    }

    /// Checks coordinates and rings as Qdrant's validation does; the error says which part.
    pub(super) fn validate(&self) -> Result<(), String> {
        let check = |p: &GeoPoint, what: &str| match (-180.0..=180.0).contains(&p.lon)
            && (-90.0..=90.0).contains(&p.lat)
        {
            true => Ok(()),
            false => Err(format!(
                "{what}: lon must be within -180..180 and lat within -90..90, found ({}, {})",
                p.lon, p.lat
            )),
        };
        match self {
            GeoCondition::Radius { center, radius } => {
                check(center, "center")?;
                match radius.is_finite() {
                    true => Ok(()),
                    false => Err("radius must be a finite number of meters".to_owned()),
                }
            }
            GeoCondition::BoundingBox {
                top_left,
                bottom_right,
            } => {
                check(top_left, "top_left")?;
                check(bottom_right, "bottom_right")
            }
            GeoCondition::Polygon {
                exterior,
                interiors,
            } => std::iter::once(("exterior", exterior))
                .chain(interiors.iter().map(|r| ("interiors", r)))
                .try_for_each(|(what, ring)| {
                    ring.iter().try_for_each(|p| check(p, what))?;
                    let closed = ring.len() >= 4
                        && ring.first().zip(ring.last()).is_some_and(|(a, b)| {
                            (a.lon - b.lon).abs() <= f64::EPSILON
                                && (a.lat - b.lat).abs() <= f64::EPSILON
                        });
                    match closed {
                        true => Ok(()),
                        false => Err(format!(
                            "{what}: a ring needs at least 4 points, the last equal to the first"
                        )),
                    }
                }),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Position {
    Inside,
    Boundary,
    Outside,
}

/// Where `p` lies against a closed ring: on one of its edges, or inside or outside by the
/// crossing count of a ray towards +lon.
fn ring_position(ring: &[GeoPoint], p: &GeoPoint) -> Position {
    let mut inside = false;
    for edge in ring.windows(2) {
        let (a, b) = (edge[0], edge[1]);
        if on_segment(a, b, p) {
            return Position::Boundary;
        }
        if (a.lat > p.lat) != (b.lat > p.lat) {
            let lon_at = a.lon + (p.lat - a.lat) * (b.lon - a.lon) / (b.lat - a.lat);
            if p.lon < lon_at {
                inside = !inside;
            }
        }
    }
    match inside {
        true => Position::Inside,
        false => Position::Outside,
    }
}

/// Whether `p` lies on the segment from `a` to `b` (collinear and within its extent).
fn on_segment(a: GeoPoint, b: GeoPoint, p: &GeoPoint) -> bool {
    let cross = (b.lon - a.lon) * (p.lat - a.lat) - (b.lat - a.lat) * (p.lon - a.lon);
    cross == 0.0
        && p.lon >= a.lon.min(b.lon)
        && p.lon <= a.lon.max(b.lon)
        && p.lat >= a.lat.min(b.lat)
        && p.lat <= a.lat.max(b.lat)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(lon: f64, lat: f64) -> GeoPoint {
        GeoPoint { lon, lat }
    }

    #[test]
    fn boxes_polygons_and_radii_exclude_their_boundaries() {
        let square = vec![
            pt(0.0, 0.0),
            pt(10.0, 0.0),
            pt(10.0, 10.0),
            pt(0.0, 10.0),
            pt(0.0, 0.0),
        ];
        let hole = vec![
            pt(4.0, 4.0),
            pt(6.0, 4.0),
            pt(6.0, 6.0),
            pt(4.0, 6.0),
            pt(4.0, 4.0),
        ];
        let poly = GeoCondition::Polygon {
            exterior: square,
            interiors: vec![hole],
        };
        assert!(poly.validate().is_ok());
        assert!(poly.contains(&pt(1.0, 1.0)));
        assert!(!poly.contains(&pt(5.0, 5.0)), "in the hole");
        assert!(!poly.contains(&pt(4.0, 5.0)), "on the hole's edge");
        assert!(!poly.contains(&pt(0.0, 5.0)), "on the exterior");
        assert!(!poly.contains(&pt(11.0, 5.0)));
        let wrap = GeoCondition::BoundingBox {
            top_left: pt(170.0, 10.0),
            bottom_right: pt(-170.0, -10.0),
        };
        assert!(wrap.contains(&pt(179.0, 0.0)) && wrap.contains(&pt(-179.0, 0.0)));
        assert!(!wrap.contains(&pt(0.0, 0.0)) && !wrap.contains(&pt(175.0, 10.0)));
        let paris = pt(2.3522, 48.8566);
        let london = pt(-0.1276, 51.5072);
        let d = paris.haversine(&london);
        assert!((d - 343_560.0).abs() < 500.0, "{d}");
        let r = |radius| GeoCondition::Radius {
            center: paris,
            radius,
        };
        assert!(r(d + 1.0).contains(&london) && !r(d).contains(&london));
        let open_ring = GeoCondition::Polygon {
            exterior: vec![pt(0.0, 0.0), pt(1.0, 0.0), pt(1.0, 1.0)],
            interiors: vec![],
        };
        assert!(open_ring.validate().is_err());
        assert!(r(1.0).validate().is_ok());
        let far = GeoCondition::Radius {
            center: pt(200.0, 0.0),
            radius: 1.0,
        };
        assert!(far.validate().is_err());
    }
}

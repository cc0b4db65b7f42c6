//! The road network of a running gateway: prepared on a thread of its own at start, so the
//! gateway answers (and `/health/ready` says why it is not ready) while a first build runs.
//! Until it is ready, optimize requests get [`optimize::Error::Unavailable`] (503); if it
//! fails, they keep getting it, with the cause, and readiness stays 503.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use super::{Result, Roads};
use crate::optimize::{self, CostMatrixSource, CostModel, Location, Matrices, Preferences};

/// A road network being prepared, or ready.
#[derive(Debug)]
pub struct LiveRoads {
    osm: PathBuf,
    roads: OnceLock<Roads>,
    failed: Mutex<Option<String>>,
}

impl LiveRoads {
    /// Checks that `osm` can be read (an error naming it, at once, if not), then prepares the
    /// network in the background.
    pub fn start(osm: PathBuf, data_dir: PathBuf, max_snap_meters: f64) -> Result<Arc<LiveRoads>> {
        super::check_extract(&osm.to_string_lossy())?;
        let live = Arc::new(LiveRoads {
            osm: osm.clone(),
            roads: OnceLock::new(),
            failed: Mutex::new(None),
        });
        let handle = live.clone();
        std::thread::Builder::new()
            .name("routegate-roads".into())
            .spawn(move || match Roads::open(&osm, &data_dir) {
                Ok((mut roads, _)) => {
                    roads.max_snap_meters = max_snap_meters;
                    let _ = handle.roads.set(roads);
                }
                Err(e) => {
                    tracing::error!(cause = %e, "the road network cannot be prepared; optimize requests get 503");
                    *handle.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                }
            })
            .map_err(|e| super::Error::Prepare(e.to_string()))?;
        Ok(live)
    }

    /// A network that is ready at once (tests, tools).
    pub fn ready_with(osm: PathBuf, roads: Roads) -> Arc<LiveRoads> {
        let live = LiveRoads {
            osm,
            roads: OnceLock::new(),
            failed: Mutex::new(None),
        };
        let _ = live.roads.set(roads);
        Arc::new(live)
    }

    /// `Ok` once the network is ready; otherwise why not.
    pub fn ready(&self) -> std::result::Result<(), String> {
        if self.roads.get().is_some() {
            return Ok(());
        }
        let failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        Err(match &*failed {
            Some(e) => format!("the road network failed to load: {e}"),
            None => format!(
                "the road network is being prepared from {}",
                self.osm.display()
            ),
        })
    }

    pub fn get(&self) -> Option<&Roads> {
        self.roads.get()
    }

    fn roads(&self) -> optimize::Result<&Roads> {
        self.roads
            .get()
            .ok_or_else(|| optimize::Error::Unavailable(self.ready().err().unwrap_or_default()))
    }
}

impl CostMatrixSource for LiveRoads {
    fn matrices(&self, points: &[Location], prefs: &Preferences) -> optimize::Result<Matrices> {
        self.roads()?.matrices(points, prefs)
    }

    fn matrices_for_problem(
        &self,
        problem: &optimize::Problem,
        points: &[Location],
    ) -> optimize::Result<Matrices> {
        self.roads()?.matrices_for_problem(problem, points)
    }

    fn honours_avoidances(&self) -> bool {
        true
    }

    fn cost_model(&self) -> CostModel {
        self.roads
            .get()
            .map_or(CostModel::GreatCircle, CostMatrixSource::cost_model)
    }

    fn path_through(&self, points: &[Location], prefs: &Preferences) -> Option<Vec<Location>> {
        self.roads.get()?.path_through(points, prefs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_the_network_is_ready_costs_are_unavailable_and_readiness_says_why() {
        let live = LiveRoads {
            osm: "depot.osm.pbf".into(),
            roads: OnceLock::new(),
            failed: Mutex::new(None),
        };
        let at = Location {
            latitude: 43.73,
            longitude: 7.42,
        };
        let err = live
            .matrices(&[at, at], &Preferences::default())
            .unwrap_err();
        assert_eq!(err.code(), "road_network_unavailable");
        assert!(
            live.ready()
                .unwrap_err()
                .contains("being prepared from depot.osm.pbf")
        );
        *live.failed.lock().unwrap() = Some("unreadable".into());
        assert!(
            live.ready()
                .unwrap_err()
                .contains("failed to load: unreadable")
        );
        assert_eq!(live.cost_model(), CostModel::GreatCircle);
    }
}

"""The benchmark matrix on several GPUs and machines, through engines people already run.

One *job* is one configuration of the matrix: calibrate it, evaluate all its tasks, hand back its
rows (:mod:`.jobs`). The driver (:mod:`.driver`) is the only process that writes the results
store; every finished job also leaves a durable JSON record in the run directory, so a driver
that dies loses nothing and a re-run records only what is missing. Executors:

* :mod:`.pool` -- ``qigbench run --workers N``: N worker processes on one machine, each pinned to
  its own GPU (``CUDA_VISIBLE_DEVICES``) or to its share of the CPU threads, handed jobs of the
  model it already has loaded first; a worker that dies is replaced and its job retried;
* :mod:`.ray_executor` -- ``--executor ray``: one Ray task per job (one GPU each on GPU), retried
  by Ray on worker loss (``max_retries``);
* :mod:`.slurm` -- ``--executor slurm``: submitit job arrays, logs per job, failed (killed,
  timed-out, preempted) jobs resubmitted.

``pytest suites/ -n N`` is the pytest-xdist path; the plugin pins and groups its workers.
Neither ray nor submitit is needed unless its executor is chosen (``pip install 'qigbench[distributed]'``).
"""

-- Seeds run history for the benchmarks: :runs runs of project `studybuddy`, 10 jobs each, and
-- :log_lines log lines in one job of the newest run. Numbers continue after existing runs.
\set ON_ERROR_STOP on
with p as (select project_id, (select max(definition_version_id) from definition_version d where d.project_id = project.project_id) as dv
           from project where project_key = 'studybuddy'),
     start as (select coalesce(max(number), 0) as n from run, p where run.project_id = p.project_id),
     inserted as (
       insert into run (project_id, number, state, definition_version_id, trigger, triggered_by, commit_sha, branch,
                        commit_author, commit_message, created_at, started_at, finished_at)
       select p.project_id, start.n + g, (array['succeeded','failed','succeeded','canceled'])[1 + g % 4], p.dv,
              (array['push','manual','webhook','api'])[1 + g % 4], 'bench', md5(g::text) || substr(md5((g * 7)::text), 1, 8),
              (array['main','feature/reminders','fix/streaks'])[1 + g % 3], 'Bench Mark <bench@example.com>',
              'Change number ' || g, now() - make_interval(mins => :runs - g), now() - make_interval(mins => :runs - g),
              now() - make_interval(mins => :runs - g) + interval '3 minutes'
       from p, start, generate_series(1, :runs) g
       returning run_id, state),
     stages as (
       insert into run_stage (run_id, name, title, position, needs, state)
       select run_id, 'stage-' || s, 'Stage ' || s, s, '{}', state from inserted, generate_series(1, 5) s
       returning run_stage_id, run_id, position, state)
insert into job (run_id, run_stage_id, name, position, needs, runs_on, state, spec, max_attempts, attempt,
                 allow_failure, optional, started_at, finished_at)
select run_id, run_stage_id, 'job-' || position || '-' || j, position * 1000 + j, '{}', '{}', state,
       '{"steps":[{"name":"work","run":"true"}],"timeout_secs":600}', 1, 1, false, false,
       now() - interval '10 minutes', now() - interval '9 minutes'
from stages, generate_series(1, 2) j;

insert into log_line (job_id, attempt, line_no, stream, text)
select (select job_id from job j join run r using (run_id) order by r.number desc, j.position limit 1), 1, g, 'stdout',
       format(E'\033[32m%s\033[0m line %s of a very long build log', to_char(g, 'FM0000000'), g)
from generate_series(1, :log_lines) g;
analyze;

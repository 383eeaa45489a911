"""Reading the desired state: from YAML files (or a git revision) to a valid DesiredState.

    yaml_compose         plain data from libyaml's events, with refusals and duplicates
    yaml_scalars         plain scalars typed by the YAML 1.2 core schema
    yaml_positions       reading YAML within limits, and the place of every key and value
    sourcefiles          which files on disk: a file, or a directory's YAML files; symlinks
    yaml_shape           what each part may hold, so that the reader refuses the rest as it reads
    problem_list         the problems found, at most MAX_PROBLEMS shown a file
    duplicates           users, keys and addresses written more than once
    validation_messages  pydantic's errors said at file:line:col in the operator's words
    loading              the file format (pydantic models), validation, every problem at once
    memo                 the users of files already found valid, by sha256, for dry runs
    gitsource            a file, a directory or a git repository (GitOps) as the source
    gittree              which files of a git tree: the same as on disk, symlinks followed
    gitcredentials       the password of a git+https:// source, kept off every command line
    gitprocess           git in a process group of its own, killed whole when the wait ends

May import `syncd.core` and the top-level modules (errors, settings, visible);
not the API, the state or anything above.
"""

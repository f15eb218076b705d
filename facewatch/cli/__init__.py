"""The `facewatch` command: click commands that parse, call one function and print (`main`: the
group and the index commands; `people`: people and find; `common`: config and database errors).
Heavy modules are imported by the commands that need them. Nothing else imports this package.
"""
